"""One active coordinator per round namespace: a lease in the store, with a fencing token.

The lease is a store key set only if absent, with a TTL (`SET NX PX` in a script), whose
value is `<token>|<holder>`; the token grows by one with every acquisition. The holder
renews it every ttl/3. Every store mutation compares the lease value with the fence its
coordinator was given (atomically, in the same Lua script as the write), so a coordinator
that lost the lease — paused, cut off, replaced — cannot write, even with a request already
in flight. On top of that the holder stops *accepting* messages on its own clock before its
TTL can have run out (`accepting`), so a new holder never starts while an old one still
answers `accepted`.

Why TTL/3 and a margin: a renewal that starts at t extends the lease to t + ttl on the
store's clock at the earliest; counting from the *start* of our last successful renewal
is conservative on our clock. We stop accepting at ttl − ttl/3 after it, i.e. when two
renewals in a row failed.

A replica that does not hold the lease is a standby: it tries to acquire every ttl/6 and,
when it succeeds, resumes the round from the store exactly as a restarted coordinator does
(PhaseMachine). Rollout strategy: see docs/high-availability.md (Recreate, one active +
standbys that report not-ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

from xaynet.coordinator.store.base import Store, StoreUnavailableError

log = logging.getLogger("xaynet.coordinator.lease")


def holder_name(port: int | None = None) -> str:
    """Who we are, for humans (`/status`) and for the lease value: host, listening port (or
    pid) and a random tag drawn per process.

    The tag makes the name unique even for two live processes on one host and port (bound
    to different addresses, or hosts with the same name): a name shared by two live holders
    would let each take the lease from the other. A process that restarts in place therefore
    waits for its predecessor's TTL (a clean stop releases the lease at once).
    """
    return f"{socket.gethostname()}:{port or os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Renewal:
    """The outcome of one renewal: still ours (same token), or taken again by us with nobody
    in between (a newer token, but our tenure began at or before the token we knew — e.g. a
    late renewal of ours that the store ran after a pause); `continuous` is false when
    another coordinator held the lease meanwhile (it may have changed the round)."""

    token: int
    continuous: bool


class LeaseKeeper:
    def __init__(self, store: Store, ttl_seconds: float = 6.0, holder: str | None = None) -> None:
        self.store = store
        self.ttl = ttl_seconds
        self.holder = holder or holder_name()
        self.token = 0
        self._valid_from = 0.0  # monotonic start of the last successful acquisition/renewal
        self.lost = asyncio.Event()
        self.other: tuple[str, int] | None = None  # the holder seen while we are a standby

    @property
    def ttl_ms(self) -> int:
        return int(self.ttl * 1000)

    @property
    def fence(self) -> str:
        return f"{self.token}|{self.holder}" if self.token else ""

    @property
    def held(self) -> bool:
        """We acquired the lease and have not seen it taken by another coordinator."""
        return self.token > 0 and not self.lost.is_set()

    def accepting(self) -> bool:
        """Held and renewed recently enough that no one else can hold it yet."""
        return self.held and time.monotonic() < self._valid_from + self.ttl * 2 / 3

    def _set(self, token: int, started: float) -> None:
        self.token = token
        self._valid_from = started
        self.store.fence = self.fence

    async def try_acquire(self) -> bool:
        started = time.monotonic()
        token = await self.store.acquire_lease(self.holder, self.ttl_ms)
        if not token:
            return False
        self.lost.clear()
        self.other = None
        self._set(token, started)
        log.info("lease acquired: this coordinator is active", extra={"holder": self.holder, "token": token})
        return True

    async def acquire(self) -> None:
        """Wait until we hold the lease (standby until then); store outages are waited out."""
        announced = False
        while True:
            try:
                if await self.try_acquire():
                    return
                current = self.other = await self.store.lease_holder()
                if not announced:
                    log.info(
                        "standby: another coordinator holds the round's lease",
                        extra={"holder": current[0] if current else None},
                    )
                    announced = True
            except StoreUnavailableError as error:
                log.warning("standby: the store is unavailable", extra={"detail": str(error)})
            await asyncio.sleep(max(0.2, self.ttl / 6))

    async def renew(self) -> Renewal | None:
        """Renew once: the renewal, or None when another coordinator holds the lease."""
        started = time.monotonic()
        try:  # a renewal slower than the renewal period counts as failed (the Redis socket
            # timeout, 5 s, is longer than ttl/3: one slow call would let the lease run out)
            renewing = self.store.renew_lease(self.fence, self.holder, self.ttl_ms)
            token, since = await asyncio.wait_for(renewing, self.ttl / 3)
        except TimeoutError as error:
            raise StoreUnavailableError(f"the lease renewal took longer than {self.ttl / 3:g} s") from error
        if not token:
            return None
        continuous = 0 < since <= self.token
        if token != self.token:
            log.warning(
                "lease had expired and was taken again",
                extra={"holder": self.holder, "token": token, "previous": self.token},
            )
        self._set(token, started)
        return Renewal(token, continuous)

    async def keep(self) -> None:
        """Renew every ttl/3 until the lease is lost (returns then, with `lost` set).

        A store outage only pauses renewals (`accepting` turns false by itself); when the
        store is back and nobody else took the lease meanwhile, we simply hold it again.
        """
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                renewal = await self.renew()
            except StoreUnavailableError as error:
                log.warning("lease renewal failed", extra={"detail": str(error)})
                continue
            if renewal is None or not renewal.continuous:
                log.warning("lease lost to another coordinator: stepping down", extra={"holder": self.holder})
                self.lost.set()
                return

    async def release(self) -> None:
        """Hand the lease over at once (clean shutdown), so a standby needs not wait the TTL."""
        if not self.token:
            return
        with contextlib.suppress(StoreUnavailableError):
            await self.store.release_lease(self.fence)
            log.info("lease released", extra={"holder": self.holder, "token": self.token})
        self.lost.set()
