"""A parsed query and how it runs over a collection of JSON documents (twins or device jobs)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .nodes import UNDEFINED, Condition, Expression, Path

DEVICES = "devices"
DEVICE_JOBS = "devices.jobs"


@dataclass(frozen=True)
class Projection:
    """One selected value: a path or literal (`expression`), or COUNT() when `expression` is None."""

    expression: Expression | None
    alias: str | None
    position: int  # 1-based place in the SELECT list, names unaliased non-paths ("$1")

    @property
    def is_count(self) -> bool:
        return self.expression is None

    def output(self, document: dict) -> tuple[str, Any]:
        """(output key, value) for one document; the key is the alias or the field's own name."""
        assert self.expression is not None
        if isinstance(self.expression, Path):
            name, value = self.expression.resolve(document)
        else:
            name, value = f"${self.position}", self.expression.evaluate(document)
        return (self.alias or name), value


@dataclass(frozen=True)
class Query:
    source: str  # DEVICES or DEVICE_JOBS
    top: int | None
    projections: tuple[Projection, ...] | None  # None means SELECT *
    condition: Condition | None
    group_by: tuple[Path, ...] = ()

    @property
    def is_aggregate(self) -> bool:
        return bool(self.group_by) or any(p.is_count for p in self.projections or ())

    @property
    def item_type(self) -> str:
        """The `x-ms-item-type` response header IoT Hub sends with these rows."""
        if self.projections is not None:
            return "raw"
        return "twin" if self.source == DEVICES else "deviceJob"


class Rows:
    """The rows of `query` built one matching document at a time (so a caller can pause between
    documents). Rows share values with the documents: treat both as read-only."""

    def __init__(self, query: Query):
        self._query = query
        self._rows: list[dict] = []
        self._count = 0
        self._groups: dict[str, tuple[dict, int]] = {}  # key -> (first document, count); first-seen order

    @property
    def full(self) -> bool:
        """TOP n rows are in: later documents change nothing."""
        query = self._query
        return query.top is not None and not query.is_aggregate and len(self._rows) >= query.top

    def add(self, document: dict) -> None:
        """One document that matches the query's condition."""
        query = self._query
        if query.group_by:
            key = _group_key(query.group_by, document)
            first, count = self._groups.get(key, (document, 0))
            self._groups[key] = (first, count + 1)
        elif query.is_aggregate:
            self._count += 1
        elif not self.full:
            self._rows.append(document if query.projections is None else _projected(query.projections, document))

    def result(self) -> list[dict]:
        query = self._query
        if query.group_by:
            rows = [_group_row(query, first, count) for first, count in self._groups.values()]
        elif query.is_aggregate:
            rows = [_counted(query, self._count)]
        else:
            rows = self._rows
        return rows if query.top is None else rows[:query.top]


def execute(query: Query, documents: Iterable[dict]) -> list[dict]:
    """Run `query` over `documents`; rows share values with the documents (read-only)."""
    rows = Rows(query)
    for document in documents:
        if query.condition is None or query.condition.matches(document):
            rows.add(document)
            if rows.full:
                break
    return rows.result()


def _projected(projections: tuple[Projection, ...], document: dict) -> dict:
    row: dict = {}
    for projection in projections:
        key, value = projection.output(document)
        if value is not UNDEFINED:  # IoT Hub leaves missing fields out of the row
            row[key] = value
    return row


def _counted(query: Query, count: int) -> dict:
    return {(p.alias or f"${p.position}"): count for p in query.projections or ()}


def _group_key(paths: tuple[Path, ...], document: dict) -> str:
    values = [p.evaluate(document) for p in paths]
    # JSON text makes unhashable values (objects) groupable; UNDEFINED gets its own marker.
    return json.dumps(
        [["undefined"] if v is UNDEFINED else ["value", v] for v in values], sort_keys=True
    )


def _group_row(query: Query, first: dict, count: int) -> dict:
    row: dict = {}
    for projection in query.projections or ():
        if projection.is_count:
            row[projection.alias or f"${projection.position}"] = count
            continue
        key, value = projection.output(first)
        if value is not UNDEFINED:
            row[key] = value
    return row
