"""Request and response bodies: JSON in (400 when it is not), JSON out (never an empty 200)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .errors import RequestBodyInvalid
from ..jsontext import compact_json


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: One decoder (json.loads with options builds one per call); NaN and Infinity are not JSON.
_decoder = json.JSONDecoder(parse_constant=_reject_constant)


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; RequestBodyInvalid (400) when it is empty or not JSON."""
    raw = await request.read()
    if not raw.strip():
        raise RequestBodyInvalid("The request body is empty; a JSON document is required")
    try:
        return _decoder.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))  # as json.loads reads bytes
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise RequestBodyInvalid("The request body is not valid JSON") from None


async def read_json_object(request: web.Request, what: str) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise RequestBodyInvalid(f"The {what} must be a JSON object")
    return body


def json_ok(body: Any, *, headers: dict[str, str] | None = None) -> web.Response:
    """200 with a JSON body (application/json; charset=utf-8)."""
    return web.json_response(body, headers=headers, dumps=compact_json)


def quoted_etag(etag: str) -> str:
    return f'"{etag}"'
