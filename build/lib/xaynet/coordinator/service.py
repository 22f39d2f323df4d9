"""Wiring: settings → store → state → machine → HTTP server; run until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from xaynet.coordinator.app import PHASE_TASK, build_app
from xaynet.coordinator.machine import PhaseMachine, load_start_state
from xaynet.coordinator.metrics import CoordinatorMetrics
from xaynet.coordinator.model_export import ModelExporter
from xaynet.coordinator.pipeline import MessagePipeline
from xaynet.coordinator.services import Services
from xaynet.coordinator.settings import Settings
from xaynet.coordinator.store.base import Store
from xaynet.coordinator.store.memory import MemoryStore
from xaynet.core.message.assembler import ChunkAssembler

log = logging.getLogger("xaynet.coordinator")


def make_store(settings: Settings, metrics: CoordinatorMetrics) -> Store:
    if settings.redis is None:
        return MemoryStore()
    from xaynet.coordinator.store.redis_store import RedisStore

    return RedisStore(settings.redis.url, settings.redis.namespace, observe=metrics.observe_store)


@dataclass
class RunningCoordinator:
    services: Services
    machine: PhaseMachine
    runner: web.AppRunner
    task: asyncio.Task[None]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def running(
    settings: Settings, host: str | None = None, port: int | None = None
) -> AsyncIterator[RunningCoordinator]:
    """Start a coordinator in this event loop (used by `xaynet coordinator` and test-drive)."""
    metrics = CoordinatorMetrics()
    store = make_store(settings, metrics)
    for section in settings.unimplemented_sections():
        log.warning("settings section accepted but not implemented: %s", section)
    for key in settings.unknown_keys():
        log.warning("unknown settings key ignored: %s", key)
    state = await load_start_state(settings, store)
    pipeline = MessagePipeline(
        ChunkAssembler(
            max_message_bytes=max(1, _largest_payload(settings)),
            max_total_bytes=settings.multipart.max_buffer_bytes,
            max_groups=settings.multipart.max_open_messages,
            ttl_seconds=settings.multipart.ttl_seconds,
        )
    )
    exporter = (
        ModelExporter(settings.model_export.directory, settings.model_export.keep)
        if settings.model_export.directory
        else None
    )
    services = Services(settings, store, state, metrics, pipeline, exporter)
    machine = PhaseMachine(services)
    app = build_app(services, machine)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner,
        host if host is not None else settings.api.host,
        settings.api.port if port is None else port,
        ssl_context=_tls(settings),
        reuse_address=True,
    )
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else settings.api.port
    task = asyncio.create_task(machine.run(), name="xaynet-phase-machine")
    app[PHASE_TASK] = task
    log.info(
        "coordinator listening",
        extra={
            "address": f"{settings.api.host}:{bound}",
            "store": store.kind,
            "model_length": settings.model.length,
        },
    )
    try:
        yield RunningCoordinator(services, machine, runner, task, bound)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()
        pipeline.close()
        await store.close()


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
    async with running(settings) as coordinator:
        await coordinator.task
