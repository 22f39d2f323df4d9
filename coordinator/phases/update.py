"""Update: aggregate masked models, store local seed dictionaries; publish seeds at the end.

Checks run in the original's order: can the model be aggregated, then the seed dictionary
(covers exactly the sum dictionary, first update per participant), and only then is the
model added. With a durable store the accepted model is logged in the same atomic write and
folded into a stored running sum every `fold_every` updates, so a restart loses nothing.
"""

from __future__ import annotations

from xaynet.coordinator.pipeline import Outcome, Request, Verdict
from xaynet.coordinator.services import Services
from xaynet.coordinator.state import RoundFailedError
from xaynet.coordinator.store.base import AggregateSnapshot, Phase, UpdateOutcome
from xaynet.core.errors import MaskError
from xaynet.core.mask.object import MaskObject
from xaynet.core.message.payloads import UpdatePayload


async def handle(services: Services, request: Request) -> Verdict:
    payload = request.payload
    assert isinstance(payload, UpdatePayload)
    state = services.state
    aggregation = state.aggregation
    assert aggregation is not None
    pk = request.participant_pk
    if pk in state.accepted_pks:
        if await services.store.accepted_digest(pk) == request.digest:
            return Verdict(Outcome.ACCEPTED, "already_accepted")  # the same message again
        return Verdict(Outcome.REJECTED, "duplicate_update", "this participant already sent its update")
    try:
        aggregation.validate(payload.masked_model)
    except MaskError as error:
        return Verdict(Outcome.REJECTED, error.reason, error.message)
    masked = payload.masked_model
    body = (payload.masked_model_bytes or masked.to_bytes()) if services.keeps_models else b""
    outcome = await services.store.add_update(pk, payload.local_seed_dict, body, request.digest)
    if outcome is UpdateOutcome.DUPLICATE and services.keeps_models:
        # Stored by an earlier attempt whose answer was lost: aggregate what was stored.
        stored = await services.store.stored_model(pk)
        if stored is not None:
            masked = MaskObject.from_bytes(stored)
            aggregation.validate(masked)
            outcome = UpdateOutcome.ACCEPTED
    if outcome is not UpdateOutcome.ACCEPTED:
        return Verdict(Outcome.REJECTED, outcome.value, _explain(outcome))
    aggregation.add_validated(masked)
    state.note_accepted(Phase.UPDATE, pk)
    if services.keeps_models:
        state.unfolded.append(pk)
        if len(state.unfolded) >= services.fold_every:
            await fold(services)
    return Verdict(Outcome.ACCEPTED)


def _explain(outcome: UpdateOutcome) -> str:
    return {
        UpdateOutcome.LENGTH_MISMATCH: "the seed dictionary does not have one entry per sum participant",
        UpdateOutcome.UNKNOWN_SUM_PARTICIPANT: "the seed dictionary names a non-sum participant",
        UpdateOutcome.DUPLICATE: "this participant already sent its update",
    }.get(outcome, outcome.value)


async def fold(services: Services) -> None:
    """Replace the logged models by the stored running sum (bounded Redis memory)."""
    state = services.state
    if not state.unfolded or state.aggregation is None:
        return
    total = state.aggregation.masked_sum()
    await services.store.fold(
        AggregateSnapshot(state.aggregation.nb_models, total.to_bytes()), state.unfolded
    )
    state.unfolded = []


async def finish(services: Services) -> None:
    """Publish the seed dictionary and enter Sum2 (call with the state lock held)."""
    state = services.state
    if services.keeps_models:
        await fold(services)
    seed_dict = await services.store.seed_dict()
    if not seed_dict or not any(seed_dict.values()):
        raise RoundFailedError("no_seed_dict", "the update phase ended without a seed dictionary")
    state.seed_dict = seed_dict
    await services.enter(state.record.with_phase(Phase.SUM2))
