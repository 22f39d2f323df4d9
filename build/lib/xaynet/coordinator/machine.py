"""The phase machine: Idle → Sum → Update → Sum2 → Unmask → Idle, failures → Error → Idle.

Timing follows the original exactly (PHASES.md §3.3): a message phase takes messages for
`min_time`; then it ends as soon as it has `min_count` accepted messages; without them by
`max_time` the round fails. Unlike the original, a restarted coordinator with a durable
store resumes the interrupted round in the phase it was in (its timer starts again).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from xaynet.coordinator.phases import error, idle, sum, sum2, unmask, update
from xaynet.coordinator.pipeline import Outcome, Request, Verdict
from xaynet.coordinator.services import Services, log
from xaynet.coordinator.settings import Settings
from xaynet.coordinator.state import MESSAGE_PHASES, RoundFailedError, RoundState
from xaynet.coordinator.store.base import Phase, RoundRecord, Store, StoreUnavailableError
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.errors import XaynetError
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.mask.object import MaskObject

_HANDLERS: dict[Phase, Callable[[Services, Request], Awaitable[Verdict]]] = {
    Phase.SUM: sum.handle,
    Phase.UPDATE: update.handle,
    Phase.SUM2: sum2.handle,
}
_FINISHERS: dict[Phase, Callable[[Services], Awaitable[None]]] = {
    Phase.SUM: sum.finish,
    Phase.UPDATE: update.finish,
    Phase.SUM2: sum2.finish,
}


def initial_record(settings: Settings) -> RoundRecord:
    """Round 0 before the first Idle: fresh keys, the all-zero seed (as the original)."""
    keys = EncryptKeyPair.generate()
    params = RoundParameters(
        keys.public,
        settings.pet.sum,
        settings.pet.update,
        bytes(32),
        settings.mask_configs,
        settings.model.length,
    )
    return RoundRecord(0, keys, params, Phase.IDLE)


async def load_start_state(settings: Settings, store: Store) -> RoundState:
    """Fresh start, or the stored round to resume (restore enabled, durable store)."""
    record = None
    if store.kind != "memory" and settings.restore.enable:
        record = await store.load_round()
    else:
        await store.wipe()
    if record is None:
        return RoundState(initial_record(settings))
    state = RoundState(
        record if record.phase in (*MESSAGE_PHASES, Phase.UNMASK) else record.with_phase(Phase.IDLE)
    )
    state.model = await store.load_model()
    return state


class PhaseMachine:
    def __init__(self, services: Services) -> None:
        self.services = services

    # -- messages ----------------------------------------------------------------------
    async def submit(self, request: Request) -> Verdict:
        """Hand a checked message to its phase, if that phase is still running."""
        state = self.services.state
        async with state.lock:
            if state.epoch != request.view.epoch or state.phase is not request.phase:
                return Verdict(Outcome.REJECTED, "phase_ended", f"the {request.phase.value} phase ended")
            limit = _limits(self.services.settings, request.phase)[1]
            if state.accepted(request.phase) >= limit:
                return Verdict(
                    Outcome.DISCARDED,
                    "phase_full",
                    f"the {request.phase.value} phase already has {limit} messages",
                )
            return await _HANDLERS[request.phase](self.services, request)

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        services = self.services
        await self._resume()
        while True:
            phase = services.state.phase
            try:
                if phase in (Phase.IDLE, Phase.ERROR):
                    await idle.run(services)
                elif phase in MESSAGE_PHASES:
                    await self._wait_for_phase_end(phase)
                    async with services.state.lock:
                        await _FINISHERS[phase](services)
                elif phase is Phase.UNMASK:
                    await unmask.run(services)
                else:  # pragma: no cover - shutdown
                    return
            except RoundFailedError as failure:
                await error.run(services, failure.reason, failure.message)
            except StoreUnavailableError as failure:
                await error.run(services, "store_unavailable", str(failure))
            services.metrics.store_up.set(1)

    async def _wait_for_phase_end(self, phase: Phase) -> None:
        state = self.services.state
        min_count, _, min_time, max_time = _limits(self.services.settings, phase)
        started = state.phase_started
        await asyncio.sleep(max(0.0, started + min_time - time.monotonic()))
        deadline = started + max_time
        while True:
            state.changed.clear()
            accepted = state.accepted(phase)
            if accepted >= min_count:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RoundFailedError(
                    "phase_timeout",
                    f"the {phase.value} phase had {accepted} of {min_count} required messages "
                    f"after {max_time:g} s",
                )
            try:
                await asyncio.wait_for(state.changed.wait(), remaining)
            except TimeoutError:
                continue

    # -- restore -----------------------------------------------------------------------
    async def _resume(self) -> None:
        """Rebuild what the stored round had accepted, so it can complete (durable stores)."""
        services, state = self.services, self.services.state
        store = services.store
        phase = state.phase
        services.metrics.set_phase(phase)
        services.metrics.round_id.set(state.record.round_id)
        if phase not in (*MESSAGE_PHASES, Phase.UNMASK):
            return
        log.info(
            "resuming interrupted round", extra={"round_id": state.record.round_id, "phase": phase.value}
        )
        try:
            if phase is Phase.SUM:
                state.accepted_pks = set(await store.sum_dict())
            else:
                state.sum_dict = await store.sum_dict()
                state.aggregation = await _rebuild_aggregate(services)
            if phase is Phase.UPDATE:
                state.accepted_pks = await store.update_participants()
            if phase in (Phase.SUM2, Phase.UNMASK):
                state.seed_dict = await store.seed_dict()
            if phase is Phase.SUM2:
                state.accepted_pks = await store.mask_senders()
        except XaynetError as failure:
            await error.run(
                services, "restore_failed", f"the stored round is inconsistent: {failure.message}"
            )
            return
        if phase in MESSAGE_PHASES:
            state.counters[phase].accepted = len(state.accepted_pks)
        state.changed.set()


async def _rebuild_aggregate(services: Services) -> Aggregation:
    state, store = services.state, services.store
    params = state.record.params
    snapshot = await store.aggregate_snapshot()
    if snapshot is None:
        aggregation = Aggregation(params.mask_config, params.model_length)
    else:
        total = MaskObject.from_bytes(snapshot.body)
        aggregation = Aggregation.restore(params.mask_config, params.model_length, snapshot.nb_models, total)
    unfolded = await store.unfolded_models()
    for body in unfolded.values():
        aggregation.add(MaskObject.from_bytes(body))
    state.unfolded = list(unfolded)
    expected = await store.update_count()
    if aggregation.nb_models != expected:
        raise XaynetError(f"{aggregation.nb_models} models are stored but {expected} updates were accepted")
    return aggregation


def _limits(settings: Settings, phase: Phase) -> tuple[int, int, float, float]:
    pet = settings.pet
    name = phase.value
    return (
        getattr(pet, f"min_{name}_count"),
        getattr(pet, f"max_{name}_count"),
        getattr(pet, f"min_{name}_time"),
        getattr(pet, f"max_{name}_time"),
    )
