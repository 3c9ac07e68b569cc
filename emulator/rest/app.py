"""The service REST front: IoT Hub's HTTPS routes -> hub model and job scheduler calls.

Every route answers as IoT Hub does: JSON bodies, the exact success status the SDK expects, and
IoT Hub-shaped errors (errors.py) for domain failures, bad JSON, bad api-versions, unknown routes.
Handlers live in one module per resource; this module is the routing table and the middleware.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from ..amqp.websocket import AMQP_WEBSOCKET_PATHS, add_amqp_websocket_route
from ..hub import Hub
from ..hub.errors import HubError
from ..hub.jobs import JobScheduler
from ..mqtt.device_front import DeviceFront
from . import auth, cloud_messages, devices, jobs, methods, query, statistics, telemetry, throttle, twins
from .auth import ServiceAuthorizer
from .context import AUTHORIZER, HUB, QUERY_PAGES, SCHEDULER, THROTTLE
from .diagnostics import RIGHTS_KEY, log_request
from .errors import Envelope, InvalidProtocolVersion, ServerError, error_response, from_http_exception
from .paging import QueryPages
from .throttle import Throttle, Throttled
from .websocket import WEBSOCKET_PATH, add_websocket_route

log = logging.getLogger("emulator.rest")

#: azure-iot-hub 2.7 sends the first; the az CLI extension the second.
API_VERSIONS = ("2021-04-12", "2024-03-31")
#: Bodies larger than this are refused with 413 (method payloads stop at 128 KB, twins at 32 KB).
MAX_BODY_BYTES = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# (verb, path, handler, rights any one of which the caller's policy must have). IoT Hub also takes
# each path with a trailing slash (the Node SDK lists devices as GET /devices/).
ROUTES: tuple[tuple[str, str, Handler, Sequence[str]], ...] = (
    ("GET", "/devices", devices.list_devices, auth.REGISTRY_READ),
    ("POST", "/devices/query", query.query_devices, auth.QUERY),
    ("GET", "/devices/{id}", devices.get_device, auth.REGISTRY_READ),
    ("PUT", "/devices/{id}", devices.put_device, auth.REGISTRY_WRITE),
    ("DELETE", "/devices/{id}", devices.delete_device, auth.REGISTRY_WRITE),
    ("DELETE", "/devices/{id}/commands", cloud_messages.purge_queue, cloud_messages.PURGE_RIGHTS),
    ("GET", "/twins/{id}", twins.get_twin, auth.TWIN_READ),
    ("PATCH", "/twins/{id}", twins.update_twin, auth.TWIN_WRITE),
    ("PUT", "/twins/{id}", twins.replace_twin, auth.TWIN_WRITE),
    ("POST", "/twins/{deviceId}/methods", methods.invoke_method, auth.METHODS),
    ("GET", "/jobs/v2/query", jobs.query_jobs, auth.JOBS_READ),  # before /jobs/v2/{id}
    ("PUT", "/jobs/v2/{id}", jobs.create_job, auth.JOBS_WRITE),
    ("GET", "/jobs/v2/{id}", jobs.get_job, auth.JOBS_READ),
    ("POST", "/jobs/v2/{id}/cancel", jobs.cancel_job, auth.JOBS_WRITE),
    # import/export jobs are not emulated: none ever exists
    ("GET", "/jobs", jobs.list_import_export_jobs, auth.REGISTRY_READ),
    ("GET", "/jobs/{id}", jobs.get_import_export_job, auth.REGISTRY_READ),
    ("GET", "/statistics/devices", statistics.device_statistics, auth.REGISTRY_READ),
    ("GET", "/statistics/service", statistics.service_statistics, auth.TWIN_READ),
    # emulator-only: what devices sent (IoT Hub serves this over its Event Hubs-compatible endpoint)
    ("GET", "/_emulator/devices/{id}/messages", telemetry.device_messages, auth.TELEMETRY),
)

#: IoT Hub's throttle class of each handler (--throttle); handlers not listed are never throttled. A
#: class the tier lacks (twins, methods, jobs on Basic tiers) answers 403 OperationNotAvailableInCurrentTier.
THROTTLE_CLASSES: dict[Handler, str] = {
    devices.list_devices: throttle.REGISTRY, devices.get_device: throttle.REGISTRY,
    devices.put_device: throttle.REGISTRY, devices.delete_device: throttle.REGISTRY,
    statistics.device_statistics: throttle.REGISTRY,
    query.query_devices: throttle.QUERIES,
    twins.get_twin: throttle.TWIN_READS, twins.update_twin: throttle.TWIN_UPDATES,
    twins.replace_twin: throttle.TWIN_UPDATES,
    methods.invoke_method: throttle.METHODS,
    jobs.query_jobs: throttle.JOBS, jobs.create_job: throttle.JOBS, jobs.get_job: throttle.JOBS,
    jobs.cancel_job: throttle.JOBS,
    # bulk registry operations, which Basic hubs offer too (scheduled jobs are standard-tier only)
    jobs.list_import_export_jobs: throttle.REGISTRY, jobs.get_import_export_job: throttle.REGISTRY,
}

#: Handlers whose own refusals IoT Hub sends in the direct-method envelope (errors.py).
METHOD_ENVELOPE = frozenset({methods.invoke_method})
#: Set on the request when its errors take another envelope than the registry's.
ENVELOPE_KEY = web.RequestKey("iothub_error_envelope", Envelope)


def _guarded(handler: Handler, rights: Sequence[str]) -> Handler:
    operation = THROTTLE_CLASSES.get(handler)

    async def guarded(request: web.Request) -> web.StreamResponse:
        request[RIGHTS_KEY] = tuple(rights)
        request.app[AUTHORIZER].authorize(request.headers.get("Authorization"), rights)
        limits = request.app[THROTTLE]
        if limits is not None and operation is not None:  # after auth: refused callers spend nothing
            cost = throttle.method_meters(request.content_length or 0) if operation == throttle.METHODS else 1
            limits.take(operation, cost)
        if handler in METHOD_ENVELOPE:  # refusals of the call itself; auth and throttling stay registry-shaped
            request[ENVELOPE_KEY] = Envelope.METHOD
        return await handler(request)

    guarded.__name__ = handler.__name__
    return guarded


@web.middleware
async def iothub_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """api-version check, then the handler; every failure becomes an IoT Hub error response, and
    every request is logged (diagnostics.py)."""
    started = time.perf_counter()
    error: HubError | None = None
    try:
        response = await _checked(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = from_http_exception(exc, request)
        response = error_response(error)
    except HubError as caught:  # the hub model's and the job scheduler's (JobError) refusals
        error = caught
        response = error_response(error, request.get(ENVELOPE_KEY, Envelope.REGISTRY))
        if isinstance(error, Throttled):
            response.headers["Retry-After"] = str(error.retry_after)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a client gets a 500 in IoT Hub's shape, never a stack trace
        log.exception("%s %s failed", request.method, request.path)
        error = ServerError("The emulator failed to handle the request; see its log")
        response = error_response(error)
    log_request(request, response.status, error, (time.perf_counter() - started) * 1000, request.app[HUB])
    return response


async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        raise request.match_info.http_exception
    if request.path != WEBSOCKET_PATH and request.path not in AMQP_WEBSOCKET_PATHS:
        version = request.query.get("api-version")
        if version not in API_VERSIONS:
            raise InvalidProtocolVersion(
                f"api-version '{(version or '')[:40]}' is not supported; use one of {', '.join(API_VERSIONS)}")
    return await handler(request)


def create_app(hub: Hub, scheduler: JobScheduler | None = None, *,
               device_front: DeviceFront | None = None, limits: Throttle | None = None) -> web.Application:
    """The REST application. Without a scheduler the job routes answer 503; without a device front
    there is no MQTT-over-WebSocket route; with `limits`, IoT Hub's tier throttles apply (429)."""
    app = web.Application(middlewares=[iothub_errors], client_max_size=MAX_BODY_BYTES)
    app[HUB] = hub
    app[SCHEDULER] = scheduler
    app[AUTHORIZER] = ServiceAuthorizer(hub)
    app[QUERY_PAGES] = QueryPages()
    app[THROTTLE] = limits
    for verb, path, handler, rights in ROUTES:
        guarded = _guarded(handler, rights)
        app.router.add_route(verb, path, guarded)
        app.router.add_route(verb, path + "/", guarded)
    if device_front is not None:
        add_websocket_route(app, device_front)
    add_amqp_websocket_route(app, hub)  # the service AMQP nodes, for clients on port 443
    return app
