"""Query text -> AST (lark LALR over grammar.lark), with every failure as a QuerySyntaxError.

Guards against hostile input come first: a length cap, then a nesting cap measured on the parse
tree without recursion, so the recursive steps that follow (tree transform, evaluate) stay far
from Python's recursion limit.
"""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from .errors import QuerySyntaxError
from .execute import DEVICE_JOBS, DEVICES, Projection, Query
from .nodes import (
    COMPARISONS,
    FUNCTIONS,
    And,
    BareValue,
    Condition,
    In,
    Literal,
    Not,
    NotIn,
    Or,
    Path,
)

MAX_QUERY_LENGTH = 64 * 1024  # characters; a job condition listing many device ids stays well below
MAX_TREE_DEPTH = 200  # parse-tree levels; about 60 levels of parentheses or NOTs

_GRAMMAR = resources.files(__package__).joinpath("grammar.lark").read_text(encoding="utf-8")
_PARSER = Lark(
    _GRAMMAR,
    start=["query", "condition_only"],
    parser="lalr",
    propagate_positions=True,
    maybe_placeholders=False,
)

# How lark's terminal names read in an error message.
_TERMINAL_TEXT = {
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "DOT": "'.'",
    "STAR": "'*'",
    "COMPARATOR": "a comparison operator",
    "NAME": "a field name",
    "STRING": "a string",
    "NUMBER": "a number",
    "INT": "an integer",
    "$END": "end of query",
}


def parse_query(text: str) -> Query:
    """Parse a full `SELECT ... FROM devices|devices.jobs [WHERE ...] [GROUP BY ...]` query."""
    tree = _parse(text, "query")
    source = _source(tree)
    return _transform(tree, source)


def parse_condition(text: str) -> Condition:
    """Parse a WHERE clause on its own (a job's queryCondition) over device twins."""
    tree = _parse(text, "condition_only")
    return _transform(tree, DEVICES)


def _end_position(text: str) -> tuple[int, int]:
    return text.count("\n") + 1, len(text) - (text.rfind("\n") + 1) + 1


def _parse(text: str, start: str) -> Tree:
    if not isinstance(text, str):
        raise TypeError(f"query text must be str, not {type(text).__name__}")
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(
            f"query is longer than {MAX_QUERY_LENGTH} characters", 1, MAX_QUERY_LENGTH + 1
        )
    if not text.strip():
        raise QuerySyntaxError("empty query", *_end_position(text))
    try:
        tree = _PARSER.parse(text, start=start)
    except UnexpectedCharacters as error:
        char = text[error.pos_in_stream] if error.pos_in_stream < len(text) else ""
        raise QuerySyntaxError(f"unexpected character {char!r}", error.line, error.column) from None
    except UnexpectedToken as error:
        raise _unexpected_token(text, error) from None
    except UnexpectedInput as error:  # UnexpectedEOF and anything lark adds later
        raise QuerySyntaxError("unexpected end of query", *_end_position(text)) from None
    _check_depth(tree)
    return tree


def _unexpected_token(text: str, error: UnexpectedToken) -> QuerySyntaxError:
    expected = sorted({_TERMINAL_TEXT.get(t, t.lstrip("_")) for t in error.expected})
    hint = f", expected {' or '.join(expected)}" if len(expected) <= 6 else ""
    token = error.token
    if token.type == "$END":
        return QuerySyntaxError(f"unexpected end of query{hint}", *_end_position(text))
    return QuerySyntaxError(f"unexpected {str(token)!r}{hint}", token.line or 1, token.column or 1)


def _check_depth(tree: Tree) -> None:
    stack: list[tuple[Tree, int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            line, column = _position(node)
            raise QuerySyntaxError("query is nested too deeply", line, column)
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _position(item: Tree | Token) -> tuple[int, int]:
    if isinstance(item, Token):
        return item.line or 1, item.column or 1
    meta = item.meta
    return (getattr(meta, "line", 1) or 1), (getattr(meta, "column", 1) or 1)


def _source(tree: Tree) -> str:
    node = next(c for c in tree.children if isinstance(c, Tree) and c.data == "source")
    name = ".".join(str(t) for t in node.children)
    normalised = name.casefold()
    if normalised not in (DEVICES, DEVICE_JOBS):
        raise QuerySyntaxError(
            f"FROM {name} is not supported; use devices or devices.jobs", *_position(node)
        )
    return normalised


def _transform(tree: Tree, source: str) -> Any:
    try:
        return _ToAst(source).transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, QuerySyntaxError):
            raise error.orig_exc from None
        raise


def _decode_string(token: Token) -> str:
    body = str(token)[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    simple = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
    index = 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        escaped = body[index + 1]  # the grammar guarantees a character after a backslash
        if escaped == "u":
            digits = body[index + 2 : index + 6]
            if len(digits) != 4 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise QuerySyntaxError(
                    "bad \\u escape in string", token.line, token.column + 1 + index
                )
            out.append(chr(int(digits, 16)))
            index += 6
            continue
        out.append(simple.get(escaped, escaped))
        index += 2
    return "".join(out)


def _decode_number(token: Token) -> int | float:
    text = str(token)
    try:
        value: int | float = float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:  # e.g. more digits than int() accepts
        raise QuerySyntaxError("number out of range", token.line, token.column) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise QuerySyntaxError("number out of range", token.line, token.column)
    return value


@v_args(meta=True)
class _ToAst(Transformer):
    """lark tree -> nodes.py objects; field paths lose the `devices.` / `devices.jobs.` prefix."""

    def __init__(self, source: str) -> None:
        super().__init__()
        self._prefix = source.split(".")

    # ---- the whole query
    def query(self, meta: Any, children: list) -> Query:
        top, projections, condition, group_by, source = None, None, None, (), DEVICES
        for child in children:
            if isinstance(child, tuple) and child and child[0] == "top":
                top = child[1]
            elif isinstance(child, tuple) and child and child[0] == "select":
                projections = child[1]
            elif isinstance(child, tuple) and child and child[0] == "source":
                source = child[1]
            elif isinstance(child, tuple) and child and child[0] == "group_by":
                group_by = child[1]
            elif isinstance(child, Condition):
                condition = child
        query = Query(source, top, projections, condition, group_by)
        _check_aggregates(query, meta)
        return query

    def condition_only(self, meta: Any, children: list) -> Condition:
        return _as_condition(children[0])

    def top(self, meta: Any, children: list) -> tuple:
        return ("top", _decode_number(children[0]))

    def select_all(self, meta: Any, children: list) -> tuple:
        return ("select", None)

    def select_list(self, meta: Any, children: list) -> tuple:
        projections = tuple(
            Projection(expression, alias, position)
            for position, (expression, alias) in enumerate(children, start=1)
        )
        _check_unique_names(projections, meta)
        return ("select", projections)

    def projection(self, meta: Any, children: list) -> tuple:
        value, alias = children[0], (children[1] if len(children) > 1 else None)
        if isinstance(value, _Call):
            if value.name.upper() != "COUNT" or value.arguments:
                raise QuerySyntaxError(
                    f"{value.name}() cannot be selected; only COUNT() can", *value.position
                )
            return (None, alias)
        return (value, alias)

    def alias(self, meta: Any, children: list) -> str:
        return str(children[0])

    def source(self, meta: Any, children: list) -> tuple:
        return ("source", ".".join(str(c) for c in children).casefold())

    def where(self, meta: Any, children: list) -> Condition:
        return _as_condition(children[0])

    def group_by(self, meta: Any, children: list) -> tuple:
        return ("group_by", tuple(children))

    # ---- conditions
    def or_expr(self, meta: Any, children: list) -> Condition:
        return Or(tuple(_as_condition(c) for c in children))

    def and_expr(self, meta: Any, children: list) -> Condition:
        return And(tuple(_as_condition(c) for c in children))

    def not_expr(self, meta: Any, children: list) -> Condition:
        return Not(_as_condition(children[0]))

    def comparison(self, meta: Any, children: list) -> Condition:
        left, operator, right = children
        return COMPARISONS[str(operator)](left, right)

    def in_list(self, meta: Any, children: list) -> Condition:
        return In(children[0], children[1])

    def not_in_list(self, meta: Any, children: list) -> Condition:
        return NotIn(children[0], children[1])

    def bare_value(self, meta: Any, children: list) -> Condition:
        return BareValue(children[0])

    def list(self, meta: Any, children: list) -> tuple:
        return tuple(literal.value for literal in children)

    def call(self, meta: Any, children: list) -> _Call:
        # SELECT COUNT() or a WHERE function: the parent decides (projection / _as_condition).
        name = children[0]
        return _Call(str(name), tuple(children[1:]), _position(name))

    # ---- values
    def path(self, meta: Any, children: list) -> Path:
        segments = tuple(str(c) for c in children)
        prefix = self._prefix
        if len(segments) > len(prefix) and [s.casefold() for s in segments[: len(prefix)]] == prefix:
            segments = segments[len(prefix) :]
        return Path(segments)

    def string(self, meta: Any, children: list) -> Literal:
        return Literal(_decode_string(children[0]))

    def number(self, meta: Any, children: list) -> Literal:
        return Literal(_decode_number(children[0]))

    def true(self, meta: Any, children: list) -> Literal:
        return Literal(True)

    def false(self, meta: Any, children: list) -> Literal:
        return Literal(False)

    def null(self, meta: Any, children: list) -> Literal:
        return Literal(None)

    def __default__(self, data: Any, children: list, meta: Any) -> Any:
        raise AssertionError(f"grammar rule {data} has no AST builder")


class _Call:
    """A function call before we know whether it is COUNT() (SELECT) or a condition (WHERE)."""

    def __init__(self, name: str, arguments: tuple, position: tuple[int, int]) -> None:
        self.name, self.arguments, self.position = name, arguments, position


def _function_condition(call: _Call) -> Condition:
    entry = FUNCTIONS.get(call.name.upper())
    if entry is None:
        supported = ", ".join(sorted(FUNCTIONS))
        raise QuerySyntaxError(
            f"unknown function {call.name}(); supported: {supported}", *call.position
        )
    node_class, arity = entry
    if len(call.arguments) != arity:
        raise QuerySyntaxError(
            f"{call.name.upper()}() takes {arity} argument{'s' if arity > 1 else ''}, "
            f"got {len(call.arguments)}",
            *call.position,
        )
    return node_class(*call.arguments)


def _check_unique_names(projections: tuple[Projection, ...], meta: Any) -> None:
    seen: set[str] = set()
    for projection in projections:
        if projection.alias is not None:
            name = projection.alias
        elif projection.expression is not None and isinstance(projection.expression, Path):
            name = projection.expression.segments[-1]
        else:
            name = f"${projection.position}"
        if name.casefold() in seen:
            raise QuerySyntaxError(
                f"{name} is selected twice; give one of them a name with AS",
                getattr(meta, "line", 1),
                getattr(meta, "column", 1),
            )
        seen.add(name.casefold())


def _check_aggregates(query: Query, meta: Any) -> None:
    """COUNT() and GROUP BY rules, checked once the whole query is known."""
    where = (getattr(meta, "line", 1), getattr(meta, "column", 1))
    if not query.is_aggregate:
        return
    if query.projections is None:
        raise QuerySyntaxError("SELECT * cannot be used with GROUP BY", *where)
    for projection in query.projections:
        if projection.is_count:
            continue
        expression = projection.expression
        grouped = isinstance(expression, Path) and any(expression.same_field(p) for p in query.group_by)
        if not grouped:
            raise QuerySyntaxError(
                "with COUNT() or GROUP BY, every other selected value must be a GROUP BY field", *where
            )


def _as_condition(item: Any) -> Condition:
    """A predicate as a Condition node; function calls become their function's node here."""
    if not isinstance(item, _Call):
        return item
    if item.name.upper() == "COUNT":
        raise QuerySyntaxError("COUNT() can only be used in SELECT", *item.position)
    return _function_condition(item)
