"""Query result paging: `x-ms-max-item-count` in, `x-ms-continuation` out.

A query runs once; the rows not yet returned are kept under an opaque continuation token so the
next pages cost nothing per device. The token also carries the offset and a fingerprint of the
query text, so a token whose rows were evicted (or that outlived a restart) still works: the
query is run again and the page taken from the same offset.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from ..hub.errors import ArgumentInvalid
from ..jsontext import compact_json

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
KEPT_RESULTS = 32  # queries whose remaining rows are kept for their next page


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    continuation: str | None  # None on the last page


def parse_page_size(value: str | None) -> int:
    """The x-ms-max-item-count header: 1..MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE when absent."""
    if value is None or value.strip() == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(value)
    except ValueError:
        raise ArgumentInvalid(f"x-ms-max-item-count must be a whole number, not '{value[:40]}'") from None
    if size < 1:
        raise ArgumentInvalid("x-ms-max-item-count must be at least 1")
    return min(size, MAX_PAGE_SIZE)


def _fingerprint(query_text: str) -> str:
    return hashlib.sha256(query_text.encode("utf-8")).hexdigest()[:16]


def _encode(result_id: str, offset: int, query_text: str) -> str:
    raw = compact_json({"r": result_id, "o": offset, "q": _fingerprint(query_text)})
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii")


def _decode(token: str, query_text: str) -> tuple[str, int]:
    try:
        fields = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        result_id, offset, fingerprint = str(fields["r"]), int(fields["o"]), fields["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeEncodeError):
        raise ArgumentInvalid("The continuation token is not valid") from None
    if fingerprint != _fingerprint(query_text) or offset < 0:
        raise ArgumentInvalid("The continuation token belongs to another query")
    return result_id, offset


class QueryPages:
    def __init__(self, kept_results: int = KEPT_RESULTS):
        self._kept_results = kept_results
        self._results: OrderedDict[str, list[dict]] = OrderedDict()

    def page(self, query_text: str, run: Callable[[], list[dict]], page_size: int,
             continuation: str | None) -> Page:
        """The next page of `query_text`'s rows; `run()` executes the query when its rows are not kept."""
        if continuation:
            result_id, offset = _decode(continuation, query_text)
            rows = self._results.get(result_id)
            if rows is None:
                rows = run()
        else:
            result_id, offset, rows = uuid.uuid4().hex, 0, run()
        end = offset + page_size
        if end >= len(rows):
            self._results.pop(result_id, None)
            return Page(rows[offset:], None)
        self._results[result_id] = rows
        self._results.move_to_end(result_id)
        while len(self._results) > self._kept_results:
            self._results.popitem(last=False)
        return Page(rows[offset:end], _encode(result_id, end, query_text))
