"""Sum: collect sum participants' ephemeral keys; publish the sum dictionary at the end."""

from __future__ import annotations

from xaynet.coordinator.pipeline import Outcome, Request, Verdict
from xaynet.coordinator.services import Services
from xaynet.coordinator.state import RoundFailedError
from xaynet.coordinator.store.base import Phase
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.message.payloads import SumPayload


async def handle(services: Services, request: Request) -> Verdict:
    payload = request.payload
    assert isinstance(payload, SumPayload)
    state = services.state
    store = services.store
    if await store.add_sum_participant(request.participant_pk, payload.ephm_pk, request.digest):
        state.note_accepted(Phase.SUM, request.participant_pk)
        return Verdict(Outcome.ACCEPTED)
    stored = await store.accepted_digest(request.participant_pk)
    if stored is not None and not request.same_message(stored):
        return Verdict(Outcome.REJECTED, "duplicate_sum", "this participant already sent another sum message")
    if request.participant_pk in state.accepted_pks and stored is not None:
        # the same message again (its answer was lost, or the client re-sent it): idempotent
        return Verdict(Outcome.ACCEPTED, "already_accepted")
    if request.participant_pk not in state.accepted_pks:
        # Stored by an earlier attempt whose answer was lost (the client retried the same
        # bytes): count it now, once.
        state.note_accepted(Phase.SUM, request.participant_pk)
        return Verdict(Outcome.ACCEPTED, "already_stored")
    return Verdict(Outcome.REJECTED, "duplicate_sum", "this participant already sent its sum message")


async def finish(services: Services) -> None:
    """Publish the final sum dictionary and enter Update (call with the state lock held)."""
    state = services.state
    sum_dict = await services.store.sum_dict()
    if not sum_dict:
        raise RoundFailedError("no_sum_participants", "the sum phase ended without any sum participant")
    state.sum_dict = sum_dict
    state.aggregation = Aggregation(state.record.params.mask_config, state.record.params.model_length)
    await services.enter(state.record.with_phase(Phase.UPDATE))
