"""The phase machine: Idle → Sum → Update → Sum2 → Unmask → Idle, failures → Error → Idle.

Timing follows the original exactly (PHASES.md §3.3): a message phase takes messages for
`min_time`; then it ends as soon as it has `min_count` accepted messages; without them by
`max_time` the round fails. Unlike the original, a restarted coordinator with a durable
store resumes the interrupted round in the phase it was in (its timer starts again), a
failed lottery draw restarts the round without waiting for `max_time` (`progress.py`), and
with `[pet] max_rounds` it stops after that many global models (counted in the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from xaynet.coordinator import progress
from xaynet.coordinator.phases import error, idle, sum, sum2, unmask, update
from xaynet.coordinator.pipeline import ALREADY_ACCEPTED, Outcome, Request, Verdict
from xaynet.coordinator.services import Services, log
from xaynet.coordinator.settings import Settings
from xaynet.coordinator.state import MESSAGE_PHASES, RoundFailedError, RoundState
from xaynet.coordinator.store.base import LeaseLostError, Phase, RoundRecord, Store, StoreUnavailableError
from xaynet.coordinator.store.lease import LeaseKeeper, holder_name
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.errors import XaynetError
from xaynet.core.mask.aggregate import Aggregation

STALL_REPORT_AFTER = 10.0  # a phase short of its minimum this long after min_time is logged …
STALL_REPORT_EVERY = 300.0  # … and again at this interval

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
        if store.kind != "memory":
            log.warning(
                "[restore] enable = false: the stored round is discarded; with a standby "
                "coordinator every takeover discards the round in progress (enable restore)"
            )
        await store.wipe()
    if record is None:
        return RoundState(initial_record(settings))
    state = RoundState(
        record if record.phase in (*MESSAGE_PHASES, Phase.UNMASK) else record.with_phase(Phase.IDLE)
    )
    state.model = await store.load_model()
    return state


def standby_state(settings: Settings) -> RoundState:
    """What a coordinator shows before it holds the round's lease (nothing of the round)."""
    return RoundState(initial_record(settings))


class PhaseMachine:
    def __init__(self, services: Services) -> None:
        self.services = services

    # -- the lease ---------------------------------------------------------------------
    async def take_lease(self, port: int | None = None) -> None:
        """Standby until this coordinator holds the round's lease (then restore, then run).

        Taking over is a restart: the caller loads the stored round and resumes it.
        """
        services = self.services
        if services.lease is None:
            ttl = _lease_ttl(services.settings)
            services.lease = LeaseKeeper(services.store, ttl, holder_name(port))
        await services.lease.acquire()

    async def run_holding(self) -> None:
        """Drive rounds while renewing the lease; losing it to another coordinator ends this
        with `LeaseLostError`: the process exits and its supervisor starts it again as a
        standby, rather than this process trying to forget a round that is not its own."""
        lease = self.services.lease
        assert lease is not None, "take_lease first"
        keeper = asyncio.create_task(lease.keep(), name="xaynet-lease")
        driver = asyncio.create_task(self.run(), name="xaynet-rounds")
        try:
            done, _ = await asyncio.wait({keeper, driver}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            keeper.cancel()
            driver.cancel()
        for task in done:
            failure = None if task.cancelled() else task.exception()
            if failure is not None:
                raise failure
        log.error(
            "this coordinator lost the round's lease to another one: exiting to restart as a standby",
            extra={"holder": lease.holder, "token": lease.token},
        )
        raise LeaseLostError("the round's lease is held by another coordinator")

    async def release_lease(self) -> None:
        """Hand the lease over at once when stopping, so a standby needs not wait the TTL."""
        if self.services.lease is not None:
            await asyncio.shield(self.services.lease.release())

    # -- messages ----------------------------------------------------------------------
    async def submit(self, request: Request) -> Verdict:
        """Hand a checked message to its phase, if that phase is still running."""
        state = self.services.state
        async with state.lock:
            lease = self.services.lease
            if lease is None or not lease.accepting():
                return Verdict(
                    Outcome.UNAVAILABLE,
                    "not_holder",
                    "this coordinator does not hold the round's lease right now; retry",
                )
            if state.epoch != request.view.epoch or state.phase is not request.phase:
                if request.same_message(await self.services.store.accepted_digest(request.participant_pk)):
                    return ALREADY_ACCEPTED  # a retry of a message accepted before the phase ended
                return Verdict(Outcome.REJECTED, "phase_ended", f"the {request.phase.value} phase ended")
            limit = progress.limits(self.services.settings, request.phase).max_count
            if state.accepted(request.phase) >= limit:
                return Verdict(
                    Outcome.DISCARDED,
                    "phase_full",
                    f"the {request.phase.value} phase already has {limit} messages",
                )
            return await _HANDLERS[request.phase](self.services, request)

    # -- the loop ----------------------------------------------------------------------
    async def run(self) -> None:
        """Drive rounds until cancelled (call `resume` first)."""
        services = self.services
        while True:
            phase = services.state.phase
            try:
                if services.finished:
                    await self._finished()
                elif phase in (Phase.IDLE, Phase.ERROR):
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
            except LeaseLostError:
                await self._until_lease_held()  # the write did not happen: do the step again
                continue
            except StoreUnavailableError as failure:
                if await self._store_kept_the_round(failure):
                    continue  # nothing of the round was lost: do the step again
                await error.run(services, "store_unavailable", str(failure))
            services.metrics.store_up.set(1)

    async def _store_kept_the_round(self, failure: StoreUnavailableError) -> bool:
        """The store failed between messages (a phase's end, a new round): wait until it is
        back, then go on with the round if it still holds everything this coordinator has
        accepted. Failing the round instead would discard messages whose senders were told
        `accepted`; only a store that lost some of them (Redis restarted without
        `appendfsync always`) makes the round fail as before."""
        services, state, store = self.services, self.services.state, self.services.store
        services.metrics.store_up.set(0)
        log.warning(
            "the store failed; the round waits for it",
            extra={"phase": state.phase.value, "detail": str(failure)},
        )
        while True:
            try:
                await store.ping()
                await self._until_lease_held()
                stored = await store.load_round()
                if stored is None or stored.round_id != state.record.round_id:
                    return state.phase in (Phase.IDLE, Phase.ERROR)
                kept = await _kept(services)
                services.metrics.store_up.set(1)
                if not kept:
                    log.error(
                        "the store lost messages this coordinator had accepted: the round fails",
                        extra={"round_id": state.record.round_id},
                    )
                return kept
            except LeaseLostError:
                await self._until_lease_held()
            except StoreUnavailableError:
                await asyncio.sleep(1.0)

    async def _until_lease_held(self) -> None:
        """A fenced write failed: wait until our lease is renewed (it had expired during a
        store outage) or, if another coordinator took it, until `serve` ends us."""
        lease = self.services.lease
        while lease is not None and not lease.accepting():
            await asyncio.sleep(0.2)

    async def _finished(self) -> None:
        """`max_rounds` models exist: publish nothing new, take no message, until stopped."""
        services, state = self.services, self.services.state
        if state.phase is not Phase.IDLE:  # only when max_rounds was lowered between starts
            async with state.lock:
                await services.enter(state.record.with_phase(Phase.IDLE))
        log.info(
            "all %d rounds are complete: this coordinator takes no more messages",
            services.settings.pet.max_rounds,
            extra={"rounds_completed": state.rounds_completed},
        )
        await asyncio.Event().wait()

    async def _wait_for_phase_end(self, phase: Phase) -> None:
        services, state = self.services, self.services.state
        bounds = progress.limits(services.settings, phase)
        started = state.phase_started
        await asyncio.sleep(max(0.0, started + bounds.min_time - time.monotonic()))
        deadline = started + bounds.max_time
        next_report = time.monotonic() + STALL_REPORT_AFTER
        while True:
            state.changed.clear()
            accepted = state.accepted(phase)
            if accepted >= bounds.min_count:
                return
            now = time.monotonic()
            if now >= deadline:
                raise RoundFailedError(
                    "phase_timeout",
                    f"the {phase.value} phase had {accepted} of {bounds.min_count} required messages "
                    f"after {bounds.max_time:g} s",
                )
            why, recheck = progress.failed_draw(services.settings, state, now)
            if why is not None:
                raise RoundFailedError("failed_draw", why)
            if now >= next_report:
                log.info(
                    "waiting: %s",
                    progress.describe(services.settings, state, now),
                    extra={"round_id": state.record.round_id, "phase": phase.value},
                )
                next_report = now + STALL_REPORT_EVERY
            wake = min(deadline - now, recheck, next_report - now)
            # woken by every accepted message: a timeout scope, not `wait_for` (a task per wake)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wake, 0.05)):
                    await state.changed.wait()

    # -- restore -----------------------------------------------------------------------
    async def resume(self) -> None:
        """Rebuild what the stored round had accepted, so it can complete (durable stores).

        The counts of every phase come from what the store holds (the earlier phases'
        too), so `/status` after a restart shows the round as it is.
        """
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
        counters = state.counters
        try:
            if phase is Phase.SUM:
                state.accepted_pks = set(await store.sum_dict())
            else:
                state.sum_dict = await store.sum_dict()
                counters[Phase.SUM].accepted = len(state.sum_dict)
                state.aggregation = await _rebuild_aggregate(services)
            if phase is Phase.UPDATE:
                state.accepted_pks = await store.update_participants()
                # Who fetched the sum dictionary before the restart (and may be training) is
                # unknown: no early failed-draw restart in this phase.
                state.input_fetches = progress.FETCHES_UNKNOWN
            if phase in (Phase.SUM2, Phase.UNMASK):
                assert state.aggregation is not None
                counters[Phase.UPDATE].accepted = state.aggregation.nb_models
                state.seed_dict = await store.seed_dict()
                senders = await store.mask_senders()
                counters[Phase.SUM2].accepted = len(senders)
                if phase is Phase.SUM2:
                    state.accepted_pks = senders
        except XaynetError as failure:
            await error.run(
                services, "restore_failed", f"the stored round is inconsistent: {failure.message}"
            )
            return
        if phase in MESSAGE_PHASES:
            counters[phase].accepted = len(state.accepted_pks)
        state.changed.set()


async def _kept(services: Services) -> bool:
    """Whether the store still holds every message of the round accepted in memory."""
    state, store = services.state, services.store
    phase = state.phase
    if phase is Phase.SUM:
        return len(await store.sum_dict()) >= state.accepted(Phase.SUM)
    if phase not in (Phase.UPDATE, Phase.SUM2, Phase.UNMASK):
        return True
    models = state.aggregation.nb_models if state.aggregation is not None else 0
    if await store.update_count() < models or len(await store.sum_dict()) != len(state.sum_dict or {}):
        return False
    try:
        await update.reconcile(services)  # more: updates whose answers were lost, not in memory
    except RoundFailedError:
        return False
    return phase is Phase.UPDATE or len(await store.mask_senders()) >= state.accepted(Phase.SUM2)


async def _rebuild_aggregate(services: Services) -> Aggregation:
    return await update.rebuild_aggregate(services)


def _lease_ttl(settings: Settings) -> float:
    """Redis: the configured TTL. Memory store: nobody else can ever take the lease, so a day
    (a busy event loop, e.g. test-drive with thousands of in-process participants, must not
    delay a renewal into 503s); the code path stays the same."""
    return settings.redis.lease_ttl_seconds if settings.redis is not None else 86_400.0
