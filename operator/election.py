"""Leader election with a coordination.k8s.io Lease: of N operator replicas exactly one acts.

Why a Lease and not kopf's peering: peering pauses every operator whose priority equals
another's (replicas of one Deployment all have the same), and kopf documents it as a guard,
not leader election. The Lease follows client-go's rules:

- a standby judges expiry by its own clock (the holder's record unchanged for
  `duration` seconds as *it* observed), so clock skew between nodes does not matter;
- every write is a PUT with the observed resourceVersion: of two standbys racing for an expired
  Lease the API server lets exactly one win (409 Conflict for the other);
- the holder renews every `retry` seconds and gives up after `renew_deadline` without a
  successful renewal — before any standby may take over (`renew_deadline < duration`) — and
  then the process exits at once, so a replica that lost the Lease never acts again;
- a holder that stops cleanly releases the Lease, and a standby takes over at its next try.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

logger = logging.getLogger("xaynet.operator.election")


def _micro_time() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """The pod's name plus a random suffix: a restarted container is a new candidate."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass
class LeaseElector:
    namespace: str
    name: str = "xaynet-operator"
    identity: str = field(default_factory=default_identity)
    duration: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0
    taken_because: str = ""
    _observed: tuple[Any, ...] | None = None
    _observed_at: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.retry < self.renew_deadline < self.duration:
            raise ValueError("the Lease needs 0 < retry < renew deadline < duration")

    # -- API calls (synchronous client, run in a worker thread) -----------------------------------
    def _api(self) -> Any:
        return kubernetes.client.CoordinationV1Api()

    def _read(self) -> dict[str, Any] | None:
        try:
            lease = self._api().read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        found: dict[str, Any] = self._api().api_client.sanitize_for_serialization(lease)
        return found

    def _record(self, transitions: int, acquired: str | None) -> dict[str, Any]:
        stamp = _micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": acquired or stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions,
        }

    def _try_acquire_or_renew(self) -> bool:
        """One attempt: True if this replica holds the Lease afterwards."""
        lease = self._read()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._record(0, None),
            }
            try:
                self._api().create_namespaced_lease(self.namespace, body)
            except ApiException as error:
                if error.status == 409:
                    return False  # another replica created it first
                raise
            self.taken_because = "created"
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        held = holder == self.identity
        expired = time.monotonic() - self._observed_at > float(
            spec.get("leaseDurationSeconds") or self.duration
        )
        if not (held or not holder or expired):
            return False
        self.taken_because = "renewed" if held else ("released by its holder" if not holder else "expired")
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if held else 1)
        lease["spec"] = self._record(transitions, spec.get("acquireTime") if held else None)
        try:
            self._api().replace_namespaced_lease(self.name, self.namespace, lease)  # carries resourceVersion
        except ApiException as error:
            if error.status == 409:
                return False  # changed since we read it: someone else renewed or took it
            raise
        return True

    def _release(self) -> None:
        lease = self._read()
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        lease["spec"] = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
        self._api().replace_namespaced_lease(self.name, self.namespace, lease)

    async def _attempt(self) -> bool:
        try:
            return await asyncio.to_thread(self._try_acquire_or_renew)
        except Exception as error:
            logger.warning("Lease %s/%s: %s", self.namespace, self.name, error)
            return False

    # -- the life of a candidate ------------------------------------------------------------------
    async def acquire(self) -> None:
        """Wait until this replica holds the Lease."""
        logger.info("standing by for the Lease %s/%s as %s", self.namespace, self.name, self.identity)
        while not await self._attempt():
            await asyncio.sleep(self.retry)
        logger.info(
            "acquired the Lease %s/%s (%s) as %s: acting",
            self.namespace,
            self.name,
            self.taken_because,
            self.identity,
        )

    async def hold(self) -> None:
        """Renew until a renewal has failed for `renew_deadline` seconds; then return (lost)."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.retry)
            if await self._attempt():
                renewed = time.monotonic()
            elif time.monotonic() - renewed >= self.renew_deadline:
                logger.error("lost the Lease %s/%s", self.namespace, self.name)
                return

    async def release(self) -> None:
        try:
            await asyncio.to_thread(self._release)
        except Exception as error:
            logger.warning("could not release the Lease: %s", error)
