"""Error: the round failed; wait for the store, then the machine starts a new round."""

from __future__ import annotations

import asyncio

from xaynet.coordinator.services import Services, log
from xaynet.coordinator.store.base import Phase, StoreUnavailableError

RETRY_SECONDS = 2.0


async def run(services: Services, reason: str, message: str) -> None:
    state = services.state
    state.rounds_failed += 1
    state.last_failure = f"{reason}: {message}"
    services.metrics.rounds.labels("failed").inc()
    log.warning(
        "round failed", extra={"round_id": state.record.round_id, "reason": reason, "detail": message}
    )
    async with state.lock:
        await services.enter(state.record.with_phase(Phase.ERROR), persist=False)
    while True:
        try:
            await services.store.ping()
            services.metrics.store_up.set(1)
            return
        except StoreUnavailableError as error:
            services.metrics.store_up.set(0)
            log.warning("waiting for the store", extra={"detail": str(error)})
            await asyncio.sleep(RETRY_SECONDS)
