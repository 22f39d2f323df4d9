"""kopf handlers for FederatedRound: every trigger calls the one reconcile (reconcile.py).

- a watch event of a round (created, edited, its status or children's owner touched, and the
  initial listing after a restart) → reconcile it now;
- a resync loop → reconcile every known round every `XAYNET_OPERATOR_POLL_SECONDS` (follows the
  coordinator, retries what failed: level-triggered, nothing depends on seeing an event);
- delete → remove the round's data from an external Redis. Only such rounds carry the
  finalizer: kopf daemons and timers would put one on every round, and a Managed round whose
  operator is uninstalled must not hang in Terminating, so the periodic part is a plain task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import aiohttp
import kopf

from xaynet.coordinator.store.base import StoreUnavailableError
from xaynet.coordinator.store.lease import LeaseKeeper
from xaynet.coordinator.store.redis_store import RedisStore
from xaynet.operator import kube
from xaynet.operator.children.common import GROUP, PLURAL, VERSION, coordinator_name, redis_namespace
from xaynet.operator.finalizer import FINALIZER, applied_redis, needs_finalizer
from xaynet.operator.reconcile import reconcile

RETRY_SECONDS = float(os.environ.get("XAYNET_OPERATOR_RETRY_SECONDS", "10"))
POLL_SECONDS = float(os.environ.get("XAYNET_OPERATOR_POLL_SECONDS", "5"))

logger = logging.getLogger("xaynet.operator")


class _Loop:
    """The resync task and the HTTP session to the coordinators, for the operator's lifetime."""

    rounds: ClassVar[set[tuple[str, str]]] = set()
    session: ClassVar[aiohttp.ClientSession | None] = None
    task: ClassVar[asyncio.Task[None] | None] = None
    # Run once kopf has stopped handling events (run.py hands the Lease over here, so a
    # standby need not wait for kopf's own teardown).
    cleanups: ClassVar[list[Callable[[], Awaitable[None]]]] = []


def at_cleanup(callback: Callable[[], Awaitable[None]]) -> None:
    """Run `callback` once kopf has stopped handling events (before its own teardown ends)."""
    _Loop.cleanups.append(callback)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="xaynet.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="xaynet.dev", key="last-handled"
    )
    settings.posting.level = logging.INFO
    settings.posting.loggers = True  # the finalizer's log lines become the round's events
    settings.watching.server_timeout = 300
    # No watching of namespaces and CRDs: `-n` namespaces are taken as given, and the operator
    # needs no cluster-wide permission in namespaced mode (a CRD added later needs a restart).
    settings.scanning.disabled = True
    kube.load_config()
    _Loop.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    _Loop.task = asyncio.create_task(_resync(), name="xaynet-resync")


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if _Loop.task is not None:
        _Loop.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _Loop.task
    if _Loop.session is not None:
        await _Loop.session.close()
    for callback in _Loop.cleanups:
        await callback()


async def _resync() -> None:
    while True:
        await asyncio.sleep(POLL_SECONDS)
        assert _Loop.session is not None
        session = _Loop.session
        await asyncio.gather(
            *(reconcile(ns, name, "resync", session) for ns, name in sorted(_Loop.rounds)),
            return_exceptions=True,  # reconcile logged, counted and posted each failure
        )


@kopf.on.event(GROUP, VERSION, PLURAL)
async def trigger(event: kopf.RawEvent, namespace: str | None, name: str, **_: Any) -> None:
    if namespace is None:
        return
    if event.get("type") == "DELETED":
        _Loop.rounds.discard((namespace, name))
        return
    _Loop.rounds.add((namespace, name))
    assert _Loop.session is not None
    with contextlib.suppress(Exception):  # logged and counted; the resync retries
        await reconcile(namespace, name, "event", _Loop.session)


def _scaled_to_zero(deployment: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment},
        "spec": {"replicas": 0},
    }


def needs_cleanup(body: kopf.Body, **_: Any) -> bool:
    return needs_finalizer(body)


@kopf.on.delete(GROUP, VERSION, PLURAL, backoff=RETRY_SECONDS, when=needs_cleanup)
async def cleanup(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Remove the round's keys from an external Redis; managed children go with their owner."""
    redis = applied_redis(body)
    if redis.get("mode") != "External" or not redis.get("url"):
        return
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    url = str(redis["url"])
    reference = redis.get("passwordSecretRef")
    if reference:
        password = await kube.read_secret_value(
            namespace, reference["name"], reference.get("key", "password")
        )
        if password:
            scheme, _separator, rest = url.partition("://")
            url = f"{scheme}://:{password}@{rest}"

    store = RedisStore(url, redis_namespace(namespace, name))
    try:
        # the store refuses writes from anyone but its lease holder (fencing): take the lease
        # like a coordinator would, once the round's coordinator has stopped and let it go
        keeper = LeaseKeeper(store, ttl_seconds=30, holder=f"xaynet-operator-cleanup:{name}")
        if not await keeper.try_acquire():
            await kube.ensure(namespace, _scaled_to_zero(coordinator_name(name)))
            raise kopf.TemporaryError(
                "the round's coordinator still holds its lease in the external Redis: scaled it to 0, "
                "removing the round's keys once the lease is free",
                delay=RETRY_SECONDS,
            )
        await store.wipe()
    except StoreUnavailableError as error:
        raise kopf.TemporaryError(
            f"cannot remove the round's data from the external Redis ({error}); the round stays in "
            f"Terminating until Redis answers. To give up on the data: kubectl patch round {name} "
            '--type=merge -p \'{"metadata":{"finalizers":null}}\'',
            delay=RETRY_SECONDS,
        ) from None
    finally:
        await store.close()
    logger.info(f"removed the round's keys ({redis_namespace(namespace, name)}) from the external Redis")
