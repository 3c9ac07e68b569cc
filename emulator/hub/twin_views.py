"""Read-only twin documents of every device: what `FROM devices` queries and job selection run over.

A device's document is built once, when it is first needed after the device or its twin changed,
and then shared by every query until the next change: a change replaces the document instead of
editing it, so rows a query returned (kept for its next pages) stay as they were. Nothing here
copies the fleet; callers must treat documents as read-only.

Equality conditions (`tags.site = 'a'`, `deviceId IN [...]`) are answered from indexes: the first
query on a field scans the fleet and builds that field's index on the way; later ones look the
value up. Scans yield to the event loop every few milliseconds (slices.py), so a query over 100,000
twins does not hold up keepalives or method deadlines.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from . import long_lived
from .query.nodes import UNDEFINED, And, Condition, Equal, In, Literal, Path, json_kind
from .slices import Slices

#: Fields with an equality index at most (least recently used ones are dropped).
MAX_INDEXES = 8
#: Above this share of the fleet an index lookup is no faster than a scan.
_INDEX_USEFUL_SHARE = 0.25

Document = dict[str, Any]
Build = Callable[[str], "Document | None"]  # device id -> its fresh document, None if it is gone

_NOT_INDEXED = object()


def _index_key(value: Any) -> Hashable:
    """A key equal for exactly the values `Equal` finds equal: the same JSON kind and ==. Strings and
    numbers are their own keys (1 and 1.0 share one); true/false/null are tagged, so that true is not 1."""
    kind = json_kind(value) if value is not UNDEFINED else None
    if kind in ("string", "number"):
        return value
    if kind in ("bool", "null"):
        return (kind, value)
    return _NOT_INDEXED  # objects and arrays never equal a literal


class _EqualityIndex:
    """Device ids by the value one field has in their document. A value most devices do not share
    (an index number, a serial) maps to the one id itself, not to a collection of one."""

    def __init__(self, path: Path):
        self.path = path
        self.complete = False  # built while a scan runs; used only once the scan is over
        self._ids: dict[Hashable, str | dict[str, None]] = {}
        self._key_of: dict[str, Hashable] = {}

    def put(self, device_id: str, document: Document) -> None:
        self.drop(device_id)
        key = _index_key(self.path.evaluate(document))
        if key is _NOT_INDEXED:
            return
        ids = self._ids.get(key)
        if ids is None:
            self._ids[key] = device_id
        elif isinstance(ids, str):
            self._ids[key] = {ids: None, device_id: None}
        else:
            ids[device_id] = None
        self._key_of[device_id] = key

    def drop(self, device_id: str) -> None:
        key = self._key_of.pop(device_id, _NOT_INDEXED)
        if key is _NOT_INDEXED:
            return
        ids = self._ids[key]
        if isinstance(ids, str):
            del self._ids[key]
            return
        ids.pop(device_id, None)
        if len(ids) == 1:
            self._ids[key] = next(iter(ids))

    def knows(self, device_id: str) -> bool:
        return device_id in self._key_of

    def ids_equal_to(self, values: tuple[Any, ...]) -> set[str]:
        found: set[str] = set()
        for value in values:
            key = _index_key(value)
            ids = self._ids.get(key) if key is not _NOT_INDEXED else None
            if isinstance(ids, str):
                found.add(ids)
            elif ids is not None:
                found.update(ids)
        return found


def _lookups(condition: Condition | None) -> Iterator[tuple[Path, tuple[Any, ...]]]:
    """(field, values) pairs the condition requires one of: `field = v`, `field IN [...]`, in an AND."""
    if isinstance(condition, And):
        for operand in condition.operands:
            yield from _lookups(operand)
    elif isinstance(condition, Equal):
        if isinstance(condition.left, Path) and isinstance(condition.right, Literal):
            yield condition.left, (condition.right.value,)
        elif isinstance(condition.right, Path) and isinstance(condition.left, Literal):
            yield condition.right, (condition.left.value,)
    elif isinstance(condition, In) and isinstance(condition.operand, Path):
        yield condition.operand, condition.values


def _is_device_id(path: Path) -> bool:
    return len(path.segments) == 1 and path.segments[0].casefold() == "deviceid"


class TwinViews:
    def __init__(self, build: Build):
        self._build = build
        self._documents: dict[str, Document] = {}  # in registration order
        self._order: dict[str, int] = {}  # device id -> registration ordinal (sorts index hits)
        self._next_ordinal = 0
        self._stale: dict[str, None] = {}  # changed since their document was built; ordered
        self._indexes: OrderedDict[tuple[str, ...], _EqualityIndex] = OrderedDict()

    # ---- what the hub reports -------------------------------------------------------------------
    def changed(self, device_id: str) -> None:
        """The device (new, or its identity or twin changed): rebuild its document when next needed."""
        self._stale[device_id] = None

    def patched(self, device_id: str, fields: Document) -> None:
        """Only these top-level fields of the device's document moved (its activity, its connection):
        a shallow new document instead of a rebuild."""
        document = self._documents.get(device_id)
        if document is None or device_id in self._stale:
            self._stale[device_id] = None
            return
        document = self._documents[device_id] = {**document, **fields}
        for index in self._indexes.values():
            index.put(device_id, document)

    def removed(self, device_id: str) -> None:
        self._stale.pop(device_id, None)
        self._documents.pop(device_id, None)
        self._order.pop(device_id, None)
        for index in self._indexes.values():
            index.drop(device_id)

    # ---- reading ----------------------------------------------------------------------------------
    def document(self, device_id: str) -> Document | None:
        """One device's current document (read-only), or None when it is not registered."""
        if device_id in self._stale:
            self._refresh_one(device_id)
        return self._documents.get(device_id)

    def refresh(self) -> None:
        """Bring every document up to date now (synchronous callers; cost: the changed devices)."""
        built = 0
        while self._stale:
            for device_id in list(self._stale):  # (popping a dict's first key again and again is O(n^2))
                self._refresh_one(device_id)
                built += 1
        long_lived.settle(built)

    async def refresh_in_slices(self) -> None:
        slices = Slices()
        built = 0
        while self._stale:
            for device_id in list(self._stale):
                if device_id in self._stale:  # not rebuilt (or removed) while this loop yielded
                    self._refresh_one(device_id)
                    built += 1
                await slices.pause_if_due()
        long_lived.settle(built)

    def documents(self) -> list[Document]:
        """Every current document (read-only), in registration order."""
        self.refresh()
        return list(self._documents.values())

    async def select(self, condition: Condition | None) -> list[Document]:
        """The current documents matching `condition` (None: all), in registration order, read-only.
        Yields to the event loop while it works."""
        await self.refresh_in_slices()
        candidates = self._from_index(condition)
        if candidates is None:
            candidates = list(self._documents.values())
            if condition is None:
                return candidates
            building = self._start_index(condition)
        else:
            building = None
        matching: list[Document] = []
        slices = Slices()
        for document in candidates:
            if condition is None or condition.matches(document):
                matching.append(document)
            if building is not None:
                self._index_scanned(building, document)
            await slices.pause_if_due()
        if building is not None:
            building.complete = True
        return matching

    # ---- indexes ----------------------------------------------------------------------------------
    def _from_index(self, condition: Condition | None) -> list[Document] | None:
        """Candidate documents from the first usable index, or None when a scan is needed."""
        for path, values in _lookups(condition):
            if _is_device_id(path):  # the documents are keyed by it already
                ids = {v for v in values if isinstance(v, str) and v in self._documents}
                return [self._documents[i] for i in sorted(ids, key=self._order.__getitem__)]
            index = self._indexes.get(path.segments)
            if index is None or not index.complete:
                continue
            self._indexes.move_to_end(path.segments)
            ids = index.ids_equal_to(values)
            if len(ids) > len(self._documents) * _INDEX_USEFUL_SHARE:
                return None
            order = self._order
            return [self._documents[i] for i in sorted(ids, key=order.__getitem__)]
        return None

    def _start_index(self, condition: Condition) -> _EqualityIndex | None:
        """An index for the condition's first equality field, filled by the scan about to run."""
        for path, _ in _lookups(condition):
            if _is_device_id(path):
                continue
            if path.segments in self._indexes:
                return None  # being built by another scan
            index = self._indexes[path.segments] = _EqualityIndex(path)
            while len(self._indexes) > MAX_INDEXES:
                self._indexes.popitem(last=False)
            return index
        return None

    def _index_scanned(self, index: _EqualityIndex, document: Document) -> None:
        device_id = document["deviceId"]
        # A document replaced or removed since the scan began was indexed (or dropped) by then.
        if not index.knows(device_id) and self._documents.get(device_id) is document:
            index.put(device_id, document)

    def _refresh_one(self, device_id: str) -> None:
        self._stale.pop(device_id, None)
        document = self._build(device_id)
        if document is None:
            self.removed(device_id)
            return
        self._documents[device_id] = document
        if device_id not in self._order:
            self._order[device_id] = self._next_ordinal
            self._next_ordinal += 1
        for index in self._indexes.values():
            index.put(device_id, document)
