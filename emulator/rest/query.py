"""POST /devices/query: the IoT Hub query language over twins (FROM devices) or job records
(FROM devices.jobs), one page per request (x-ms-max-item-count, x-ms-continuation)."""

from __future__ import annotations

from aiohttp import web

from ..hub.errors import ArgumentInvalid
from ..hub.query import QuerySyntaxError, parse_query
from .bodies import json_ok, read_json_object
from .context import HUB, QUERY_PAGES
from .errors import QueryInvalid
from .paging import parse_page_size

ITEM_TYPE = "x-ms-item-type"
CONTINUATION = "x-ms-continuation"
MAX_ITEM_COUNT = "x-ms-max-item-count"


class _NotKept(Exception):
    """The rows of this query are not kept: it must run (asynchronously, so not inside paging)."""


def _not_kept() -> list[dict]:
    raise _NotKept


async def query_devices(request: web.Request) -> web.Response:
    body = await read_json_object(request, "query specification")
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise ArgumentInvalid("The query specification needs a non-empty 'query' string")
    try:
        query = parse_query(text)
    except QuerySyntaxError as error:
        raise QueryInvalid(str(error)) from None
    page_size = parse_page_size(request.headers.get(MAX_ITEM_COUNT))
    continuation = request.headers.get(CONTINUATION)
    pages = request.app[QUERY_PAGES]
    try:  # the next page of rows kept from an earlier request: the query need not run again
        page = pages.page(text, _not_kept, page_size, continuation)
    except _NotKept:
        rows = await request.app[HUB].query(query)
        page = pages.page(text, lambda: rows, page_size, continuation)
    headers = {ITEM_TYPE: query.item_type}
    if page.continuation:
        headers[CONTINUATION] = page.continuation
    return json_ok(page.rows, headers=headers)
