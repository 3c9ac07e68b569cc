"""What the REST handlers share, stored on the aiohttp application under typed keys."""

from __future__ import annotations

from aiohttp import web

from ..hub import Hub
from ..hub.jobs import JobScheduler
from .auth import ServiceAuthorizer
from .errors import ServiceUnavailable
from .paging import QueryPages

HUB = web.AppKey("hub", Hub)
#: None when the emulator runs without a scheduler: the job routes then answer 503.
SCHEDULER = web.AppKey("scheduler", object)
AUTHORIZER = web.AppKey("authorizer", ServiceAuthorizer)
QUERY_PAGES = web.AppKey("query_pages", QueryPages)
#: None unless the emulator runs with --throttle.
THROTTLE = web.AppKey("throttle", object)


def hub_of(request: web.Request) -> Hub:
    return request.app[HUB]


def scheduler_of(request: web.Request) -> JobScheduler:
    scheduler = request.app[SCHEDULER]
    if not isinstance(scheduler, JobScheduler):
        raise ServiceUnavailable("Jobs are not available: this emulator runs without a job scheduler")
    return scheduler
