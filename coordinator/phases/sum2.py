"""Sum2: count the sum participants' votes for the aggregated mask."""

from __future__ import annotations

from xaynet.coordinator.pipeline import Outcome, Request, Verdict
from xaynet.coordinator.services import Services
from xaynet.coordinator.store.base import MaskOutcome, Phase
from xaynet.core.message.payloads import Sum2Payload


async def handle(services: Services, request: Request) -> Verdict:
    payload = request.payload
    assert isinstance(payload, Sum2Payload)
    state = services.state
    pk = request.participant_pk
    if pk in state.accepted_pks:
        if request.same_message(await services.store.accepted_digest(pk)):
            return Verdict(Outcome.ACCEPTED, "already_accepted")  # the same message again
        return Verdict(Outcome.REJECTED, "duplicate_sum2", "this participant already sent its mask")
    outcome = await services.store.add_mask(pk, payload.model_mask.to_bytes(), request.digest)
    if outcome is MaskOutcome.DUPLICATE:
        if not request.same_message(await services.store.accepted_digest(pk)):
            return Verdict(Outcome.REJECTED, "duplicate_sum2", "this participant already sent its mask")
        outcome = MaskOutcome.ACCEPTED  # stored by an earlier attempt whose answer was lost
    if outcome is MaskOutcome.UNKNOWN_SUM_PARTICIPANT:
        return Verdict(Outcome.REJECTED, outcome.value, "the sender is not in this round's sum dictionary")
    state.note_accepted(Phase.SUM2, pk)
    return Verdict(Outcome.ACCEPTED)


async def finish(services: Services) -> None:
    # A mask whose store reply was lost is stored (and counts in Unmask's vote) but was not
    # counted here: the store's senders are the phase's count.
    senders = await services.store.mask_senders()
    state = services.state
    state.counters[Phase.SUM2].accepted = max(state.counters[Phase.SUM2].accepted, len(senders))
    services.metrics.unique_masks.set(await services.store.unique_masks())
    await services.enter(services.state.record.with_phase(Phase.UNMASK))
