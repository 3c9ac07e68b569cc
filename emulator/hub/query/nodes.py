"""Query AST: one node class per operator, each evaluating itself against one JSON document.

Values follow IoT Hub (which inherits Cosmos DB's rules): a missing field is UNDEFINED, and any
comparison that involves UNDEFINED or two values of different JSON types is UNDEFINED too. Logic
is three-valued (AND/OR/NOT pass UNDEFINED through as SQL does with NULL) and a document matches
only when its condition is exactly True. So `tags.x != 'a'` does not match a twin without
`tags.x`, and `NOT (tags.x = 1)` does not match a twin whose `tags.x` is a string; only
`NOT IS_DEFINED(tags.x)` finds twins without it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar


class _Undefined:
    """The value of a field a document does not have (distinct from JSON null)."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:  # guard against accidental truthiness checks
        raise TypeError("UNDEFINED has no truth value; compare with `is UNDEFINED`")


UNDEFINED: Any = _Undefined()


def json_kind(value: Any) -> str:
    """The JSON type of a Python value decoded from JSON ('bool' before 'number': bool is an int)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "unknown"


def lookup(container: Any, name: str) -> tuple[str, Any] | None:
    """Find `name` in a JSON object: exact key first, then case-insensitively (as IoT Hub matches
    `DeviceId` to `deviceId`). Returns (actual key, value) or None."""
    if not isinstance(container, dict):
        return None
    if name in container:
        return name, container[name]
    folded = name.casefold()
    for key, value in container.items():
        if isinstance(key, str) and key.casefold() == folded:
            return key, value
    return None


# ---------------------------------------------------------------- scalar expressions


class Expression(ABC):
    @abstractmethod
    def evaluate(self, document: dict) -> Any:
        """The value of this expression for `document` (UNDEFINED when it has none)."""


@dataclass(frozen=True)
class Literal(Expression):
    value: Any

    def evaluate(self, document: dict) -> Any:
        return self.value


@dataclass(frozen=True)
class Path(Expression):
    """A dotted field reference such as `properties.reported.fw.version` (prefix already stripped)."""

    segments: tuple[str, ...]

    def resolve(self, document: dict) -> tuple[str, Any]:
        """(actual name of the last field, its value), the value being UNDEFINED when absent."""
        current: Any = document
        name = self.segments[-1]
        for segment in self.segments:
            found = lookup(current, segment)
            if found is None:
                return name, UNDEFINED
            name, current = found
        return name, current

    def evaluate(self, document: dict) -> Any:
        return self.resolve(document)[1]

    def same_field(self, other: Path) -> bool:
        return [s.casefold() for s in self.segments] == [s.casefold() for s in other.segments]


# ---------------------------------------------------------------- conditions


class Condition(Expression):
    """A boolean expression: evaluate() returns True, False or UNDEFINED."""

    def matches(self, document: dict) -> bool:
        return self.evaluate(document) is True


def _comparable(left: Any, right: Any) -> str | None:
    """The shared JSON kind of two defined values, or None when they cannot be compared."""
    if left is UNDEFINED or right is UNDEFINED:
        return None
    kind = json_kind(left)
    return kind if kind == json_kind(right) else None


@dataclass(frozen=True)
class Comparison(Condition):
    """Binary comparison; subclasses say which operator and which kinds it orders."""

    left: Expression
    right: Expression

    symbol: ClassVar[str] = "?"

    def evaluate(self, document: dict) -> Any:
        left, right = self.left.evaluate(document), self.right.evaluate(document)
        kind = _comparable(left, right)
        if kind is None:
            return UNDEFINED
        return self.compare(kind, left, right)

    @abstractmethod
    def compare(self, kind: str, left: Any, right: Any) -> Any: ...


class Equal(Comparison):
    symbol: ClassVar[str] = "="

    def compare(self, kind: str, left: Any, right: Any) -> Any:
        return left == right


class NotEqual(Comparison):
    symbol: ClassVar[str] = "!="

    def compare(self, kind: str, left: Any, right: Any) -> Any:
        return left != right


_ORDERED_KINDS = {"number", "string", "bool"}


class _Ordering(Comparison):
    def compare(self, kind: str, left: Any, right: Any) -> Any:
        if kind not in _ORDERED_KINDS:
            return UNDEFINED
        return self.order(left, right)

    @abstractmethod
    def order(self, left: Any, right: Any) -> bool: ...


class LessThan(_Ordering):
    symbol: ClassVar[str] = "<"

    def order(self, left: Any, right: Any) -> bool:
        return left < right


class GreaterThan(_Ordering):
    symbol: ClassVar[str] = ">"

    def order(self, left: Any, right: Any) -> bool:
        return left > right


class LessOrEqual(_Ordering):
    symbol: ClassVar[str] = "<="

    def order(self, left: Any, right: Any) -> bool:
        return left <= right


class GreaterOrEqual(_Ordering):
    symbol: ClassVar[str] = ">="

    def order(self, left: Any, right: Any) -> bool:
        return left >= right


COMPARISONS: dict[str, type[Comparison]] = {
    "=": Equal,
    "!=": NotEqual,
    "<>": NotEqual,
    "<": LessThan,
    ">": GreaterThan,
    "<=": LessOrEqual,
    ">=": GreaterOrEqual,
}


def _member(value: Any, candidates: tuple[Any, ...]) -> bool:
    kind = json_kind(value)
    return any(json_kind(c) == kind and c == value for c in candidates)


@dataclass(frozen=True)
class In(Condition):
    operand: Expression
    values: tuple[Any, ...]

    def evaluate(self, document: dict) -> Any:
        value = self.operand.evaluate(document)
        if value is UNDEFINED:
            return UNDEFINED
        return _member(value, self.values)


@dataclass(frozen=True)
class NotIn(Condition):
    operand: Expression
    values: tuple[Any, ...]

    def evaluate(self, document: dict) -> Any:
        value = self.operand.evaluate(document)
        if value is UNDEFINED:
            return UNDEFINED
        return not _member(value, self.values)


@dataclass(frozen=True)
class And(Condition):
    operands: tuple[Condition, ...]

    def evaluate(self, document: dict) -> Any:
        result: Any = True
        for operand in self.operands:
            value = operand.evaluate(document)
            if value is False:
                return False
            if value is not True:
                result = UNDEFINED
        return result


@dataclass(frozen=True)
class Or(Condition):
    operands: tuple[Condition, ...]

    def evaluate(self, document: dict) -> Any:
        result: Any = False
        for operand in self.operands:
            value = operand.evaluate(document)
            if value is True:
                return True
            if value is not False:
                result = UNDEFINED
        return result


@dataclass(frozen=True)
class Not(Condition):
    operand: Condition

    def evaluate(self, document: dict) -> Any:
        value = self.operand.evaluate(document)
        return UNDEFINED if value is UNDEFINED else not value


@dataclass(frozen=True)
class BareValue(Condition):
    """A value used as a condition (`WHERE properties.reported.isOn`): only true/false count."""

    operand: Expression

    def evaluate(self, document: dict) -> Any:
        value = self.operand.evaluate(document)
        return value if isinstance(value, bool) else UNDEFINED


@dataclass(frozen=True)
class IsDefined(Condition):
    operand: Expression

    def evaluate(self, document: dict) -> Any:
        return self.operand.evaluate(document) is not UNDEFINED


@dataclass(frozen=True)
class IsNull(Condition):
    """True for JSON null; UNDEFINED for a missing field, so `NOT IS_NULL(x)` needs x present."""

    operand: Expression

    def evaluate(self, document: dict) -> Any:
        value = self.operand.evaluate(document)
        return UNDEFINED if value is UNDEFINED else value is None


@dataclass(frozen=True)
class StartsWith(Condition):
    operand: Expression
    prefix: Expression

    def evaluate(self, document: dict) -> Any:
        value, prefix = self.operand.evaluate(document), self.prefix.evaluate(document)
        if _comparable(value, prefix) != "string":
            return UNDEFINED
        return value.startswith(prefix)


@dataclass(frozen=True)
class EndsWith(Condition):
    operand: Expression
    suffix: Expression

    def evaluate(self, document: dict) -> Any:
        value, suffix = self.operand.evaluate(document), self.suffix.evaluate(document)
        if _comparable(value, suffix) != "string":
            return UNDEFINED
        return value.endswith(suffix)


# Function name (upper case) -> (node class, number of arguments).
FUNCTIONS: dict[str, tuple[type[Condition], int]] = {
    "IS_DEFINED": (IsDefined, 1),
    "IS_NULL": (IsNull, 1),
    "STARTSWITH": (StartsWith, 2),
    "STARTS_WITH": (StartsWith, 2),
    "ENDSWITH": (EndsWith, 2),
    "ENDS_WITH": (EndsWith, 2),
}
