"""Error: the round failed; wait for the store, count the failure there, then the machine
starts a new round."""

from __future__ import annotations

import asyncio

from xaynet.coordinator.services import Services, log
from xaynet.coordinator.store.base import Phase, StoreUnavailableError

RETRY_SECONDS = 2.0


async def run(services: Services, reason: str, message: str) -> None:
    state = services.state
    state.last_failure = f"{reason}: {message}"
    log.warning(
        "round failed: %s",
        message,
        extra={"round_id": state.record.round_id, "reason": reason, "detail": message},
    )
    async with state.lock:
        await services.enter(state.record.with_phase(Phase.ERROR), persist=False)
    while True:
        try:
            await services.store.ping()
            if state.record.round_id > 0:  # counted once per round id, also across restarts
                counted = state.rounds_failed
                totals = await services.store.add_round_totals(
                    state.record.round_id, {"rounds_failed": 1, **state.round_counts()}
                )
                services.apply_totals(totals)
                services.metrics.rounds.labels("failed").inc(state.rounds_failed - counted)
            services.metrics.store_up.set(1)
            return
        except StoreUnavailableError as error:
            services.metrics.store_up.set(0)
            log.warning("waiting for the store", extra={"detail": str(error)})
            await asyncio.sleep(RETRY_SECONDS)
