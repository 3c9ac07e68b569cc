"""POST /devices/query: the IoT Hub query language over twins (FROM devices) or job records
(FROM devices.jobs), one page per request (x-ms-max-item-count, x-ms-continuation)."""

from __future__ import annotations

from aiohttp import web

from ..hub.errors import ArgumentInvalid
from ..hub.jobs import JobScheduler
from ..hub.query import DEVICE_JOBS, QuerySyntaxError, execute, parse_query
from .bodies import json_ok, read_json_object
from .context import HUB, QUERY_PAGES, SCHEDULER
from .errors import QueryInvalid
from .paging import parse_page_size

ITEM_TYPE = "x-ms-item-type"
CONTINUATION = "x-ms-continuation"
MAX_ITEM_COUNT = "x-ms-max-item-count"


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
    app = request.app

    def run() -> list[dict]:
        if query.source == DEVICE_JOBS:
            scheduler = app[SCHEDULER]
            documents = scheduler.device_job_documents() if isinstance(scheduler, JobScheduler) else []
        else:
            documents = app[HUB].twin_documents()
        return execute(query, documents)

    page = app[QUERY_PAGES].page(text, run, page_size, request.headers.get(CONTINUATION))
    headers = {ITEM_TYPE: query.item_type}
    if page.continuation:
        headers[CONTINUATION] = page.continuation
    return json_ok(page.rows, headers=headers)
