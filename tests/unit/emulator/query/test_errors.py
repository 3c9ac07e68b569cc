"""Bad query text: one QuerySyntaxError with a position, never anything else."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.hub.query import (
    MAX_QUERY_LENGTH,
    QuerySyntaxError,
    parse_condition,
    parse_query,
)


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("SELECT * FORM devices", 1, 10, "unexpected 'FORM', expected FROM"),
        ("SELECT * FROM devices WHERE", 1, 28, "unexpected end of query"),
        ("SELECT * FROM devices WHERE deviceId = ", 1, 40, "unexpected end of query"),
        ("SELECT * FROM devices\nWHERE deviceId == 'a'", 2, 17, "unexpected '='"),
        ("SELECT * FROM devices WHERE deviceId = 'a", 1, 40, "unexpected character"),
        ("SELECT * FROM devices WHERE deviceId # 'a'", 1, 38, "unexpected character '#'"),
        ("SELECT * FROM devices.modules", 1, 15, "FROM devices.modules is not supported"),
        ("SELECT * FROM twins", 1, 15, "FROM twins is not supported"),
        ("SELECT * FROM devices WHERE LOWER(deviceId)", 1, 29, "unknown function LOWER()"),
        ("SELECT * FROM devices WHERE LOWER(deviceId) = 'a'", 1, 45, "unexpected '='"),
        ("SELECT * FROM devices WHERE IS_DEFINED(a, b)", 1, 29, "IS_DEFINED() takes 1 argument, got 2"),
        ("SELECT * FROM devices WHERE STARTSWITH(a)", 1, 29, "STARTSWITH() takes 2 arguments, got 1"),
        ("SELECT * FROM devices WHERE COUNT()", 1, 29, "COUNT() can only be used in SELECT"),
        ("SELECT * FROM devices WHERE a = 1 AND COUNT()", 1, 39, "COUNT() can only be used in SELECT"),
        ("SELECT IS_NULL(a) AS x FROM devices", 1, 8, "only COUNT() can"),
        ("SELECT deviceId, COUNT() AS n FROM devices", 1, 1, "must be a GROUP BY field"),
        ("SELECT status, COUNT() AS n FROM devices GROUP BY deviceId", 1, 1, "must be a GROUP BY field"),
        ("SELECT * FROM devices GROUP BY status", 1, 1, "SELECT * cannot be used with GROUP BY"),
        ("SELECT deviceId, tags.deviceId FROM devices", 1, 8, "deviceId is selected twice"),
        ("SELECT TOP -1 * FROM devices", 1, 12, "unexpected '-1'"),
        ("SELECT * FROM devices WHERE a = 1e999", 1, 33, "number out of range"),
        ("SELECT * FROM devices WHERE a = " + "9" * 5000, 1, 33, "number out of range"),
        ("SELECT * FROM devices WHERE a = 'bad \\u12'", 1, 38, "bad \\u escape"),
        ("   ", 1, 4, "empty query"),
        ("", 1, 1, "empty query"),
    ],
)
def test_syntax_errors_carry_position(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(text)
    error = caught.value
    assert words in error.message
    assert (error.line, error.column) == (line, column)
    assert str(error) == f"{error.message} (line {line}, column {column})"
    assert "\n" not in str(error)
    assert isinstance(error, ValueError)


def test_condition_errors_carry_position() -> None:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_condition("deviceId IN ['a', ]")
    assert (caught.value.line, caught.value.column) == (1, 19)
    with pytest.raises(QuerySyntaxError):
        parse_condition("SELECT * FROM devices")


def test_overlong_query_is_refused_before_parsing() -> None:
    text = "SELECT * FROM devices WHERE deviceId = '" + "x" * MAX_QUERY_LENGTH + "'"
    with pytest.raises(QuerySyntaxError, match="longer than"):
        parse_query(text)


def test_deep_nesting_is_a_clear_error_not_a_recursion_error() -> None:
    with pytest.raises(QuerySyntaxError, match="nested too deeply"):
        parse_condition("NOT " * 5000 + "a = 1")


def test_moderate_nesting_and_long_flat_conditions_work() -> None:
    assert parse_condition("NOT " * 50 + "a = 1").matches({"a": 1})
    assert parse_condition("(" * 2000 + "a = 1" + ")" * 2000).matches({"a": 1})
    many = " OR ".join(f"deviceId = 'd{i}'" for i in range(2000))
    condition = parse_condition(many)
    assert condition.matches({"deviceId": "d1999"})
    assert not condition.matches({"deviceId": "d2000"})


def test_non_string_input_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_query(None)  # type: ignore[arg-type]


QUERY_WORDS = ["SELECT", "*", "FROM", "devices", "devices.jobs", "WHERE", "AND", "OR", "NOT", "IN", "NIN",
               "(", ")", "[", "]", ",", "=", "<>", "<", ">=", "'x'", '"y"', "1", "-2.5e3", "true", "null",
               "TOP", "GROUP", "BY", "COUNT()", "AS", "IS_DEFINED(", "tags.a", ".", "\\", "'", "\n"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_only_ever_raises_query_syntax_error(text: str) -> None:
    for parse in (parse_query, parse_condition):
        try:
            parse(text)
        except QuerySyntaxError as error:
            assert error.line >= 1 and error.column >= 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(QUERY_WORDS), max_size=30))
def test_random_token_soup_only_ever_raises_query_syntax_error(words: list[str]) -> None:
    text = " ".join(words)
    for parse in (parse_query, parse_condition):
        try:
            parse(text)
        except QuerySyntaxError as error:
            assert error.line >= 1 and error.column >= 1
