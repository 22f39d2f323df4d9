"""Wiring: settings → store → state → machine → HTTP server; run until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from xaynet.coordinator.app import PHASE_TASK, build_app
from xaynet.coordinator.machine import PhaseMachine, initial_record, load_start_state
from xaynet.coordinator.metrics import CoordinatorMetrics
from xaynet.coordinator.model_export import ModelExporter
from xaynet.coordinator.pipeline import MessagePipeline
from xaynet.coordinator.services import Services
from xaynet.coordinator.settings import Settings
from xaynet.coordinator.state import MESSAGE_PHASES, RoundState
from xaynet.coordinator.store.base import Store, StoreUnavailableError
from xaynet.coordinator.store.memory import MemoryStore
from xaynet.core.message.assembler import ChunkAssembler

log = logging.getLogger("xaynet.coordinator")
STORE_RETRY_MAX_SECONDS = 30.0  # backoff between attempts to reach the store at start
SHUTDOWN_SECONDS = 10.0  # how long requests in flight may take to finish at stop
LINGER_SECONDS = 1.0


def make_store(settings: Settings, metrics: CoordinatorMetrics) -> Store:
    if settings.redis is None:
        return MemoryStore()
    from xaynet.coordinator.store.redis_store import RedisStore

    password = settings.redis.password.get_secret_value() if settings.redis.password else None
    return RedisStore(
        settings.redis.url, settings.redis.namespace, observe=metrics.observe_store, password=password
    )


@dataclass
class RunningCoordinator:
    services: Services
    machine: PhaseMachine
    runner: web.AppRunner
    task: asyncio.Task[None]
    port: int
    stop_reason: str = ""  # set by whoever stops it; logged in the one "stopped" line

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running(
    settings: Settings, host: str | None = None, port: int | None = None
) -> AsyncIterator[RunningCoordinator]:
    """Start a coordinator in this event loop (used by `xaynet coordinator` and test-drive).

    The HTTP server starts first and the round is restored from the store afterwards, retried
    with backoff while the store is unreachable (on Kubernetes the coordinator often starts
    before Redis): meanwhile `/healthz` is 200 and `/readyz` and the round's routes are 503.
    """
    metrics = CoordinatorMetrics()
    store = make_store(settings, metrics)
    for warning in settings.warnings():
        log.warning("%s", warning)
    pipeline = MessagePipeline(
        ChunkAssembler(
            max_message_bytes=max(1, _largest_payload(settings)),
            max_total_bytes=settings.multipart.max_buffer_bytes,
            max_groups=settings.multipart.max_open_messages,
            ttl_seconds=settings.multipart.ttl_seconds,
        )
    )
    metrics.in_progress.set_function(lambda: pipeline.in_progress)  # read when scraped
    exporter = (
        ModelExporter(settings.model_export.directory, settings.model_export.keep)
        if settings.model_export.directory
        else None
    )
    services = Services(settings, store, RoundState(initial_record(settings)), metrics, pipeline, exporter)
    if settings.s3 is not None:  # every global model is also archived in S3 (coordinator/archive.py)
        from xaynet.coordinator.archive import ModelArchive

        services.archive = ModelArchive(
            settings.s3,
            store,
            can_write=lambda: (
                services.started
                and not services.stopping
                and (services.lease is None or services.lease.accepting())
            ),  # uploads re-check the lease
            registry=metrics.registry,
        )
    machine = PhaseMachine(services)
    app = build_app(services, machine)
    # keepalive_timeout is also how long a new connection may take to send its first request's
    # headers (aiohttp arms it at connection start): slow or silent clients are cut off. The
    # body deadline is the `lifecycle` middleware's; after an early answer (413, 408) the rest
    # of an unread body is drained for at most LINGER_SECONDS, then the connection closes.
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=settings.api.read_timeout,
        lingering_time=LINGER_SECONDS,
        shutdown_timeout=SHUTDOWN_SECONDS,
    )
    await runner.setup()
    site = web.TCPSite(
        runner,
        host if host is not None else settings.api.host,
        settings.api.port if port is None else port,
        ssl_context=_tls(settings),
        reuse_address=True,
    )
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        pipeline.close()
        await store.close()
        raise
    bound = runner.addresses[0][1] if runner.addresses else settings.api.port
    task = asyncio.create_task(_restore_and_run(services, machine, bound), name="xaynet-phase-machine")
    app[PHASE_TASK].append(task)
    archive = services.archive
    archiver = asyncio.create_task(archive.run(), name="xaynet-s3-archive") if archive else None
    log.info(
        "coordinator listening",
        extra={
            "address": f"{settings.api.host}:{bound}",
            "store": store.kind,
            "model_length": settings.model.length,
        },
    )
    coordinator = RunningCoordinator(services, machine, runner, task, bound)
    try:
        yield coordinator
    finally:
        await _stop(coordinator)
        if archiver is not None:  # what is still queued stays in the store for the next start
            archiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await archiver
        pipeline.close()
        await store.close()


async def _restore_and_run(services: Services, machine: PhaseMachine, port: int | None = None) -> None:
    try:
        await until_store_answers(services, services.store.ping)  # Redis may start after us
        weakness = await services.store.durability()
        if weakness is not None:
            log.warning("%s; run it with appendonly yes, appendfsync always (docs/durability.md)", weakness)
        await machine.take_lease(port)  # standby until this replica holds the round's lease
        await until_store_answers(services, lambda: _load(services, machine))
        services.waiting_for_store = None
        services.started = True
        await machine.run_holding()
    finally:
        await machine.release_lease()


async def _load(services: Services, machine: PhaseMachine) -> None:
    """The stored round, the totals over all rounds, and what the resumed round accepted."""
    services.state = await load_start_state(services.settings, services.store)
    totals = await services.store.round_totals()
    services.apply_totals(totals)
    await machine.resume()
    services.metrics.restore(totals, services.state.round_counts())


async def until_store_answers(services: Services, step: Callable[[], Awaitable[None]]) -> None:
    """Run `step`, retrying with backoff while the store is unreachable: one warning line (no
    traceback), `/readyz` 503 with the reason meanwhile, one line when the store answers."""
    attempts = 0

    def report(retry: RetryCallState) -> None:
        nonlocal attempts
        attempts = retry.attempt_number
        failure = retry.outcome.exception() if retry.outcome is not None else None
        services.waiting_for_store = str(failure)
        if attempts == 1:
            log.warning(
                "the store is not reachable (%s); retrying with backoff, /readyz answers 503 until it is",
                failure,
            )
        else:
            log.debug("store still unreachable", extra={"attempt": attempts, "detail": str(failure)})

    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(StoreUnavailableError),
        wait=wait_exponential(multiplier=0.5, max=STORE_RETRY_MAX_SECONDS),
        before_sleep=report,
    ):
        with attempt:
            await step()
    if attempts:
        log.info("the store answers", extra={"attempts": attempts + 1, "store": services.store.kind})
        services.waiting_for_store = None


async def _stop(coordinator: RunningCoordinator) -> None:
    """Stop taking messages, let the requests in flight finish, stop the machine between writes.

    `services.stopping` makes `/message` answer 503 (the client retries; the next start
    resumes the round), the runner waits for the requests already being handled, and the
    machine is cancelled while this holds the round lock, i.e. never inside a store write.
    """
    services, task = coordinator.services, coordinator.task
    started = time.monotonic()
    services.stopping = True
    await coordinator.runner.cleanup()
    state = services.state
    async with state.lock:
        task.cancel()
    # Bounded: a stop must end even if something below swallowed the cancellation (asyncio
    # then cancels what is left when the loop closes).
    await asyncio.wait({task}, timeout=SHUTDOWN_SECONDS)
    if not task.done():
        log.error("the phase machine did not stop within %.0f s; exiting anyway", SHUTDOWN_SECONDS)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("the phase machine ended with an error: %s", task.exception())
    if coordinator.stop_reason:
        log.info(
            "coordinator stopped (%s) in %.1f s: round %d, %s phase, accepted %s; a restart resumes it",
            coordinator.stop_reason,
            time.monotonic() - started,
            state.record.round_id,
            state.phase.value,
            ", ".join(f"{n} {p.value}" for p, n in ((p, state.accepted(p)) for p in MESSAGE_PHASES)),
        )


def _largest_payload(settings: Settings) -> int:
    mask = settings.mask_configs
    model = 12 + settings.model.length * mask.vect.bytes_per_number + mask.unit.bytes_per_number
    return 128 + model + 4 + 112 * settings.pet.max_sum_count


def _tls(settings: Settings) -> ssl.SSLContext | None:
    api = settings.api
    if api.tls_certificate is None and api.tls_key is None:
        return None
    if api.tls_certificate is None or api.tls_key is None:
        raise ValueError("api.tls_certificate and api.tls_key must be set together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(api.tls_certificate, api.tls_key)
    return context


async def serve_forever(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT (then stop cleanly, exit 0) or until the machine dies."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    async with running(settings) as coordinator:
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({stopping, coordinator.task}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if received:
            coordinator.stop_reason = received[0]
        elif not coordinator.task.cancelled() and coordinator.task.exception() is not None:
            log.error("the phase machine stopped: %s", coordinator.task.exception())
            raise SystemExit(1)
