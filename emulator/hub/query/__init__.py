"""The IoT Hub query language: `SELECT ... FROM devices | devices.jobs [WHERE] [GROUP BY]`.

Pure and synchronous: text -> AST (`parse_query`, `parse_condition`), AST + documents -> rows
(`execute`, `Condition.matches`). Grammar: grammar.lark; semantics: nodes.py.
"""

from .errors import QuerySyntaxError
from .execute import DEVICE_JOBS, DEVICES, Projection, Query, execute
from .nodes import UNDEFINED, Condition
from .parser import MAX_QUERY_LENGTH, MAX_TREE_DEPTH, parse_condition, parse_query

__all__ = [
    "DEVICES",
    "DEVICE_JOBS",
    "MAX_QUERY_LENGTH",
    "MAX_TREE_DEPTH",
    "UNDEFINED",
    "Condition",
    "Projection",
    "Query",
    "QuerySyntaxError",
    "execute",
    "parse_condition",
    "parse_query",
]
