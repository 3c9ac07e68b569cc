"""Device twins: GET, PATCH (merge) and PUT (replace) /twins/{id}, with If-Match etags (412)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .bodies import json_ok, quoted_etag, read_json_object
from .context import hub_of


def _twin_response(twin: dict[str, Any]) -> web.Response:
    return json_ok(twin, headers={"ETag": quoted_etag(twin["etag"])})


async def get_twin(request: web.Request) -> web.Response:
    return _twin_response(hub_of(request).get_twin(request.match_info["id"]))


async def update_twin(request: web.Request) -> web.Response:
    patch = await read_json_object(request, "twin patch")
    twin = hub_of(request).update_twin(request.match_info["id"], patch, if_match=request.headers.get("If-Match"))
    return _twin_response(twin)


async def replace_twin(request: web.Request) -> web.Response:
    document = await read_json_object(request, "twin")
    twin = hub_of(request).replace_twin(request.match_info["id"], document,
                                        if_match=request.headers.get("If-Match"))
    return _twin_response(twin)
