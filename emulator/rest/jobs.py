"""Jobs v2: PUT /jobs/v2/{id}, GET /jobs/v2/{id}, POST /jobs/v2/{id}/cancel, GET /jobs/v2/query.

The scheduler (emulator/hub/jobs.py) validates and runs jobs; these handlers only translate. The
query route answers an object {"type", "items", "continuationToken"}: the SDK fails on an array.
"""

from __future__ import annotations

from aiohttp import web

from .bodies import json_ok, read_json_object
from .context import scheduler_of


async def create_job(request: web.Request) -> web.Response:
    job_request = await read_json_object(request, "job request")
    scheduler = scheduler_of(request)
    return json_ok(scheduler.create(job_request, request.match_info["id"]))


async def get_job(request: web.Request) -> web.Response:
    return json_ok(scheduler_of(request).get(request.match_info["id"]))


async def cancel_job(request: web.Request) -> web.Response:
    return json_ok(scheduler_of(request).cancel(request.match_info["id"]))


async def query_jobs(request: web.Request) -> web.Response:
    job_type = request.query.get("jobType") or None
    job_status = request.query.get("jobStatus") or None
    items = scheduler_of(request).query(job_type, job_status)
    return json_ok({"type": "jobResponse", "items": items, "continuationToken": None})
