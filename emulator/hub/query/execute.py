"""A parsed query and how it runs over a collection of JSON documents (twins or device jobs)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
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


def execute(query: Query, documents: Iterable[dict]) -> list[dict]:
    """Run `query` over `documents`; results are fresh copies the caller may change."""
    matching: Iterator[dict] = (
        d for d in documents if query.condition is None or query.condition.matches(d)
    )
    if query.group_by:
        rows: Iterator[dict] = iter(_grouped(query, matching))
    elif query.is_aggregate:
        rows = iter([_counted(query, sum(1 for _ in matching))])
    elif query.projections is None:
        rows = (copy.deepcopy(d) for d in matching)
    else:
        rows = (_projected(query.projections, d) for d in matching)
    return list(rows if query.top is None else islice(rows, query.top))


def _projected(projections: tuple[Projection, ...], document: dict) -> dict:
    row: dict = {}
    for projection in projections:
        key, value = projection.output(document)
        if value is not UNDEFINED:  # IoT Hub leaves missing fields out of the row
            row[key] = copy.deepcopy(value)
    return row


def _counted(query: Query, count: int) -> dict:
    return {(p.alias or f"${p.position}"): count for p in query.projections or ()}


def _group_key(paths: tuple[Path, ...], document: dict) -> str:
    values = [p.evaluate(document) for p in paths]
    # JSON text makes unhashable values (objects) groupable; UNDEFINED gets its own marker.
    return json.dumps(
        [["undefined"] if v is UNDEFINED else ["value", v] for v in values], sort_keys=True
    )


def _grouped(query: Query, documents: Iterable[dict]) -> list[dict]:
    groups: dict[str, tuple[dict, int]] = {}  # key -> (first document, count); keeps first-seen order
    for document in documents:
        key = _group_key(query.group_by, document)
        first, count = groups.get(key, (document, 0))
        groups[key] = (first, count + 1)
    rows = []
    for first, count in groups.values():
        row: dict = {}
        for projection in query.projections or ():
            if projection.is_count:
                row[projection.alias or f"${projection.position}"] = count
                continue
            key, value = projection.output(first)
            if value is not UNDEFINED:
                row[key] = copy.deepcopy(value)
        rows.append(row)
    return rows
