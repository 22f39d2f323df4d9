"""`xaynet operator`: metrics, leader election, then kopf — in that order.

Every replica serves /metrics and /healthz; only the Lease holder runs kopf (watches, handlers,
the resync loop), so two replicas never both act. A replica that loses the Lease exits at
once (the kubelet restarts it as a standby) rather than finish anything in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import kopf
from aiohttp import web

from xaynet.operator import handlers, kube, metrics
from xaynet.operator.election import LeaseElector

assert handlers  # imported for its side effect: it registers the kopf handlers
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
logger = logging.getLogger("xaynet.operator")


@dataclass(frozen=True)
class Options:
    namespaces: list[str]
    all_namespaces: bool
    liveness_port: int
    metrics_port: int
    lease_namespace: str | None
    lease_name: str
    lease_duration: float
    verbose: bool


def lease_namespace(options: Options) -> str:
    """Where the Lease lives: as asked, else the operator's own namespace, else the first watched."""
    if options.lease_namespace:
        return options.lease_namespace
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return os.environ.get("POD_NAMESPACE") or (options.namespaces or ["default"])[0]


async def _standby_health(port: int) -> web.AppRunner | None:
    """A standby is alive too: /healthz answers until kopf takes the port over."""
    if not port:
        return None
    app = web.Application()

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


async def _main(options: Options) -> int:
    kube.load_config()
    metrics.serve(options.metrics_port)
    duration = options.lease_duration
    elector = LeaseElector(
        namespace=lease_namespace(options),
        name=options.lease_name,
        duration=duration,
        renew_deadline=duration * 2 / 3,
        retry=duration / 6,
    )
    health = await _standby_health(options.liveness_port)
    await elector.acquire()
    metrics.LEADER.set(1)
    if health is not None:
        await health.cleanup()
    keeper = asyncio.create_task(elector.hold())  # before kopf starts: kopf leaves it alone
    operator = asyncio.create_task(
        kopf.operator(
            standalone=True,  # the Lease, not kopf's peering, decides who acts
            clusterwide=options.all_namespaces,
            namespaces=options.namespaces,
            liveness_endpoint=(
                f"http://0.0.0.0:{options.liveness_port}/healthz" if options.liveness_port else None
            ),
        )
    )

    async def hand_over() -> None:
        """Stop renewing, then release: the next standby acts at its next try."""
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await elector.release()
        metrics.LEADER.set(0)

    handlers.at_cleanup(hand_over)  # as soon as kopf has stopped handling events
    done, _pending = await asyncio.wait({operator, keeper}, return_when=asyncio.FIRST_COMPLETED)
    if keeper in done and not keeper.cancelled():
        logger.error("lost the leader Lease: exiting so that only the new holder acts")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    try:
        await operator
    finally:
        await hand_over()  # idempotent: releases only a Lease this replica still holds
    return 0


def run(options: Options) -> int:
    kopf.configure(verbose=options.verbose)
    return asyncio.run(_main(options))
