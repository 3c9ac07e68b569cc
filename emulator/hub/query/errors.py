"""The one error the query language raises: bad query text, with where it went wrong."""

from __future__ import annotations


class QuerySyntaxError(ValueError):
    """A query or condition that cannot be parsed or makes no sense (HTTP 400 at the REST front).

    `line` and `column` are 1-based and point at the offending character, so a front can
    repeat them to the user as IoT Hub does ("... at line 1, column 23").
    """

    def __init__(self, message: str, line: int, column: int) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.message} (line {self.line}, column {self.column})"
