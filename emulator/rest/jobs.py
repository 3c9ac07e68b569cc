"""Jobs v2: PUT /jobs/v2/{id}, GET /jobs/v2/{id}, POST /jobs/v2/{id}/cancel, GET /jobs/v2/query;
and the import/export jobs list (GET /jobs, GET /jobs/{id}), which is always empty here.

The scheduler (emulator/hub/jobs.py) validates and runs jobs; these handlers only translate. The
query route answers as /devices/query does: a bare JSON array of JobResponses, `x-ms-item-type:
jobResponse`, pages by `x-ms-max-item-count` and `x-ms-continuation` (what the Node and C# SDKs and
the az extension read; the Python SDK's model expects an object and cannot read it).
"""

from __future__ import annotations

from aiohttp import web

from ..hub.jobs_errors import JobNotFound
from .bodies import json_ok, read_json_object
from .context import QUERY_PAGES, scheduler_of
from .paging import parse_page_size
from .query import CONTINUATION, ITEM_TYPE, MAX_ITEM_COUNT

JOB_ITEM_TYPE = "jobResponse"


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
    scheduler = scheduler_of(request)
    page = request.app[QUERY_PAGES].page(
        f"jobs/v2/query?jobType={job_type}&jobStatus={job_status}",
        lambda: scheduler.query(job_type, job_status),
        parse_page_size(request.headers.get(MAX_ITEM_COUNT)), request.headers.get(CONTINUATION))
    headers = {ITEM_TYPE: JOB_ITEM_TYPE}
    if page.continuation:
        headers[CONTINUATION] = page.continuation
    return json_ok(page.rows, headers=headers)


async def list_import_export_jobs(request: web.Request) -> web.Response:
    return json_ok([])


async def get_import_export_job(request: web.Request) -> web.Response:
    raise JobNotFound(f"Job with id '{request.match_info['id'][:128]}' not found; "
                      "the emulator runs no import/export jobs")
