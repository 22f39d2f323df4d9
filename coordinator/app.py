"""HTTP routes: the five routes of the original API, plus health, readiness, metrics, status.

`POST /message` answers (documented in the README):
* 200, empty body, `X-Xaynet-Result: accepted` — the message counts.
* 200, `X-Xaynet-Result: rejected|discarded|buffered`, JSON reason — a genuine message of this
  round that its rules refuse (wrong phase, duplicate, not eligible, ...), a message beyond
  the phase's maximum, or one chunk of a multipart message. The original answered 200 to
  everything, and its clients re-post the same bytes on any other status, which would stall
  them; so these stay 200.
* 400 with a JSON reason — bytes that cannot be a message of this round (cannot be opened
  with the round key, malformed, bad signature). 413 — larger than any message can be.
* 503 — the store is unavailable; nothing changed, the client's retry will be processed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from typing import Any

from aiohttp import ClientPayloadError, web
from aiohttp.typedefs import Handler

from xaynet.coordinator import progress
from xaynet.coordinator.allocator import keep_freed_buffers
from xaynet.coordinator.machine import PhaseMachine
from xaynet.coordinator.pipeline import BUFFERED, Outcome, Request, Verdict
from xaynet.coordinator.services import Services
from xaynet.coordinator.store.base import Phase, StoreUnavailableError
from xaynet.core.bincode import encode_seed_dict, encode_sum_dict

log = logging.getLogger("xaynet.coordinator.http")
SERVICES = web.AppKey("services", Services)
MACHINE = web.AppKey("machine", PhaseMachine)
# The phase machine's task, set once it exists (after the server started: a holder, since
# an application must not be changed once it runs).
PHASE_TASK: web.AppKey[list[asyncio.Task[None]]] = web.AppKey("phase_task")
# The largest POST body of these settings (fixed at start: the settings are frozen).
MAX_BODY = web.AppKey("max_body", int)
# A body the `lifecycle` middleware read (under its deadline) for the handler.
BODY = web.RequestKey("body", bytes)
OCTETS = "application/octet-stream"


def max_message_size(services: Services) -> int:
    """The largest POST body any message of these settings can have (a sealed update)."""
    mask = services.settings.mask_configs
    length = services.settings.model.length
    model = 12 + length * mask.vect.bytes_per_number + mask.unit.bytes_per_number
    payload = 128 + model + 4 + 112 * services.settings.pet.max_sum_count
    return 48 + 136 + payload


def _json(status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(data), content_type="application/json", headers=headers
    )


def _verdict_json(verdict: Verdict) -> dict[str, str]:
    return {"result": verdict.outcome.value, "reason": verdict.reason, "detail": verdict.detail}


# Most answers to a chunk: encoded once, not per chunk.
_BUFFERED_BODY = json.dumps(_verdict_json(BUFFERED)).encode()


def _message_response(verdict: Verdict, services: Services | None = None) -> web.Response:
    headers = {"X-Xaynet-Result": verdict.outcome.value}
    lease = services.lease if services is not None else None
    if lease is not None and lease.held:
        # who answered, under which fencing token: no two holders ever accept at once
        headers["X-Xaynet-Holder"] = lease.holder
        headers["X-Xaynet-Lease-Token"] = str(lease.token)
    if verdict.reason:
        headers["X-Xaynet-Reason"] = verdict.reason
    if verdict is BUFFERED:
        headers["Content-Type"] = "application/json"
        return web.Response(status=200, body=_BUFFERED_BODY, headers=headers)
    body = _verdict_json(verdict)
    match verdict.outcome:
        case Outcome.ACCEPTED:
            return web.Response(status=200, headers=headers)
        case Outcome.INVALID:
            return _json(400, body, headers)
        case Outcome.UNAVAILABLE:
            headers["Retry-After"] = "2"
            return _json(503, body, headers)
        case _:
            return _json(200, body, headers)


async def post_message(request: web.Request) -> web.Response:
    services, machine = request.app[SERVICES], request.app[MACHINE]
    state = services.state
    body = request.get(BODY)
    if body is None:
        body = await request.read()
    services.metrics.received_bytes.inc(len(body))
    view = state.view()
    prepared = await services.pipeline.prepare(body, view, services.store, services.metrics.count_opened)
    if isinstance(prepared, Request):
        try:
            verdict = await machine.submit(prepared)
            services.metrics.store_up.set(1)
        except StoreUnavailableError as error:
            services.metrics.store_up.set(0)
            verdict = Verdict(Outcome.UNAVAILABLE, "store_unavailable", str(error))
        if prepared.chunks is not None and verdict.outcome is not Outcome.UNAVAILABLE:
            # final: the chunks go (a 503 keeps them for the client's retry of the last chunk)
            accepted = verdict.outcome is Outcome.ACCEPTED
            await services.pipeline.release(services.store, prepared.chunks, accepted)
    else:
        verdict = prepared
    services.metrics.count_message(view.record.phase.value, verdict.outcome.value, verdict.reason or "ok")
    if verdict is BUFFERED:
        return _message_response(verdict, services)  # nothing else to count or say per chunk
    if verdict.outcome is Outcome.ACCEPTED:
        services.metrics.set_accepted(view.record.phase.value, state.accepted(view.record.phase))
    else:
        if verdict.outcome in (Outcome.REJECTED, Outcome.DISCARDED) and view.record.phase in state.counters:
            counter = state.counters[view.record.phase]
            if verdict.outcome is Outcome.REJECTED:
                counter.rejected += 1
            else:
                counter.discarded += 1
        log.debug(
            "message %s", verdict.outcome.value, extra={"reason": verdict.reason, "detail": verdict.detail}
        )
    return _message_response(verdict, services)


async def get_params(request: web.Request) -> web.Response:
    state = request.app[SERVICES].state
    state.note_params_fetch()  # someone takes part in this round (the failed-draw rule)
    return web.Response(body=state.params_body, content_type=OCTETS)


async def get_sums(request: web.Request) -> web.Response:
    state = request.app[SERVICES].state
    sum_dict = state.sum_dict
    if sum_dict is None:
        return web.Response(status=204)
    if state.phase is Phase.UPDATE:
        state.note_input_fetch()  # an update participant is at work (the failed-draw rule)
    return web.Response(body=encode_sum_dict(sum_dict), content_type=OCTETS)


async def get_seeds(request: web.Request) -> web.Response:
    raw = request.query.get("pk")
    if raw is None:
        return _json(
            400, {"error": "the query parameter pk (base64 of the sum participant's public key) is missing"}
        )
    try:
        pk = base64.b64decode(raw.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        pk = b""
    if len(pk) != 32:
        return _json(400, {"error": "pk must be the standard base64 of a 32-byte public key"})
    seed_dict = request.app[SERVICES].state.seed_dict
    if seed_dict is None or pk not in seed_dict:
        return web.Response(status=204)
    return web.Response(body=encode_seed_dict(seed_dict[pk]), content_type=OCTETS)


async def get_model(request: web.Request) -> web.Response:
    model = request.app[SERVICES].state.model
    if model is None:
        return web.Response(status=204)
    return web.Response(body=model.body, content_type=OCTETS, headers={"X-Xaynet-Round": str(model.round_id)})


async def healthz(request: web.Request) -> web.Response:
    """200 while the process can make progress, also while it waits for its store at start."""
    tasks: list[asyncio.Task[None]] = request.app[PHASE_TASK]
    if tasks and tasks[0].done() and not request.app[SERVICES].stopping:
        return _json(500, {"healthy": False, "reason": "the phase machine stopped"})
    return _json(200, {"healthy": True})


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if services.stopping:
        return _json(503, {"ready": False, "reason": "stopping"})
    if not services.started:
        return _json(503, _starting(services))
    try:
        await services.store.ping()
    except StoreUnavailableError as error:
        services.metrics.store_up.set(0)
        return _json(503, {"ready": False, "reason": "store_unavailable", "detail": str(error)})
    services.metrics.store_up.set(1)
    return _json(200, {"ready": True, "store": services.store.kind})


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return web.Response(
        body=services.metrics.render(), headers={"Content-Type": services.metrics.content_type}
    )


def _starting(services: Services) -> dict[str, Any]:
    lease = services.lease
    if lease is not None and not lease.held and lease.other is not None:
        return {
            "ready": False,
            "reason": "standby",
            "detail": "another coordinator holds the round's lease; this one takes over if it dies",
            "lease": {
                "role": "standby",
                "holder": lease.other[0],
                "token": lease.other[1],
                "self": lease.holder,
            },
        }
    waiting = services.waiting_for_store
    return {
        "ready": False,
        "reason": "store_unavailable" if waiting else "starting",
        "detail": f"waiting for the store: {waiting}" if waiting else "restoring the round from the store",
    }


def status_document(services: Services) -> dict[str, Any]:
    state = services.state
    record = state.record
    params = record.params
    model = state.model
    return {
        "round_id": record.round_id,
        "phase": record.phase.value,
        "phase_started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.phase_started_wall)),
        "counts": {phase.value: counter.as_dict() for phase, counter in state.counters.items()},
        "sum_participants": len(state.sum_dict) if state.sum_dict is not None else None,
        "waiting_for": progress.describe(services.settings, state),
        "rounds_completed": state.rounds_completed,
        "max_rounds": services.settings.pet.max_rounds,
        "finished": services.finished,
        "last_round": state.last_round,
        "rounds_failed": state.rounds_failed,
        "last_failure": state.last_failure,
        "model_length": params.model_length,
        "mask_config": str(params.mask_config.vect),
        "probabilities": {"sum": params.sum, "update": params.update},
        "max_update_count": services.settings.pet.max_update_count,  # effective (capped) value
        "store": services.store.kind,
        "archive": services.archive.status() if services.archive is not None else None,
        "lease": None
        if services.lease is None
        else {
            "role": "holder",
            "holder": services.lease.holder,
            "token": services.lease.token,
            "accepting": services.lease.accepting(),  # false while renewals fail: 503s
        },
        "global_model": None
        if model is None
        else {"round_id": model.round_id, "checksum": f"sha256:{model.checksum}", "size": len(model.body)},
    }


async def status(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if not services.started:
        return _json(503, _starting(services), {"Retry-After": "2"})
    return _json(200, status_document(services))


_ALWAYS_SERVED = frozenset({"/healthz", "/readyz", "/metrics", "/status"})
BODY_BYTES_PER_SECOND = 64 * 1024  # slowest upload we wait for, on top of `read_timeout`


@web.middleware
async def lifecycle(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve the round only once it is restored; refuse messages while stopping or finished;
    read bodies under a deadline (aiohttp has none) and refuse oversized ones before reading."""
    services = request.app[SERVICES]
    if request.path in _ALWAYS_SERVED:
        return await handler(request)
    if not services.started:
        return _json(503, _starting(services), {"Retry-After": "2"})
    if request.method != "POST":
        return await handler(request)
    if services.stopping:
        verdict = Verdict(Outcome.UNAVAILABLE, "stopping", "the coordinator is stopping; retry shortly")
        return _message_response(verdict)
    if services.finished:
        limit = services.settings.pet.max_rounds
        services.metrics.count_message(services.state.phase.value, "rejected", "rounds_finished")
        return _message_response(
            Verdict(
                Outcome.REJECTED,
                "rounds_finished",
                f"all {limit} rounds of this coordinator are complete; it takes no more messages",
            )
        )
    largest = request.app[MAX_BODY]
    length = request.content_length
    if length is not None and length > largest:
        response = _json(
            413, {"error": f"a message has at most {largest} bytes; this one announces {length}"}
        )
        response.force_close()
        return response
    with services.pipeline.receiving():  # large bodies arriving together go to the thread pool
        return await _read_and_handle(request, handler, services, largest, length)


async def _read_and_handle(
    request: web.Request, handler: Handler, services: Services, largest: int, length: int | None
) -> web.StreamResponse:
    """Read the body under its deadline, then hand the request to the route."""
    if request.content.is_eof():  # the whole body came with the headers (a chunk, usually)
        return await handler(request)
    deadline = services.settings.api.read_timeout + (length or largest) / BODY_BYTES_PER_SECOND
    try:
        async with asyncio.timeout(deadline):
            if length is None:  # chunked transfer: aiohttp's read() enforces the size limit
                await request.read()  # cached: the handler's read() returns these bytes
            else:  # at most `length` bytes; joined once (read() copies a large body thrice)
                request[BODY] = await request.content.read()
    except TimeoutError:
        response = _json(408, {"error": f"the request body did not arrive within {deadline:.0f} s"})
        response.force_close()
        return response
    except (ConnectionResetError, ClientPayloadError) as error:
        # the client went away mid-body (a phone losing its network): nothing was taken, and
        # no answer can reach it; one debug line, not aiohttp's ERROR with a traceback
        log.debug("client disconnected before its body arrived: %s", error)
        response = _json(400, {"error": "the connection closed before the body arrived"})
        response.force_close()
        return response
    return await handler(request)


def build_app(services: Services, machine: PhaseMachine) -> web.Application:
    app = web.Application(client_max_size=max_message_size(services), middlewares=[lifecycle])
    app[SERVICES] = services
    app[MAX_BODY] = max_message_size(services)
    keep_freed_buffers(app[MAX_BODY])  # each message would page-fault its buffers in again
    app[PHASE_TASK] = []
    app[MACHINE] = machine
    app.router.add_get("/params", get_params)
    app.router.add_get("/sums", get_sums)
    app.router.add_get("/seeds", get_seeds)
    app.router.add_get("/model", get_model)
    app.router.add_post("/message", post_message)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app
