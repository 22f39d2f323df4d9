"""Update: aggregate masked models, store local seed dictionaries; publish seeds at the end.

Checks run in the original's order: can the model be aggregated, then the seed dictionary
(covers exactly the sum dictionary, first update per participant), and only then is the
model added. With a durable store the accepted model is logged in the same atomic write and
folded into a stored running sum every `fold_every` updates, so a restart loses nothing.
"""

from __future__ import annotations

from xaynet.coordinator.pipeline import Outcome, Request, Verdict
from xaynet.coordinator.services import Services, log
from xaynet.coordinator.state import RoundFailedError
from xaynet.coordinator.store.base import AggregateSnapshot, Phase, UpdateOutcome
from xaynet.core.errors import MaskError, XaynetError
from xaynet.core.mask.aggregate import Aggregation
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
        if request.same_message(await services.store.accepted_digest(pk)):
            return Verdict(Outcome.ACCEPTED, "already_accepted")  # the same message again
        return Verdict(Outcome.REJECTED, "duplicate_update", "this participant already sent its update")
    try:
        aggregation.validate(payload.masked_model)
    except MaskError as error:
        return Verdict(Outcome.REJECTED, error.reason, error.message)
    masked = payload.masked_model
    body = bytes(payload.masked_model_bytes or masked.to_bytes()) if services.keeps_models else b""
    outcome = await services.store.add_update(pk, payload.local_seed_dict, body, request.digest)
    if (
        outcome is UpdateOutcome.DUPLICATE
        and services.keeps_models
        and request.same_message(await services.store.accepted_digest(pk))
    ):
        # Stored by an earlier attempt of this very message whose answer was lost: aggregate
        # what was stored. A different message from that participant stays a duplicate.
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
        await reconcile(services)
        await fold(services)
    seed_dict = await services.store.seed_dict()
    if not seed_dict or not any(seed_dict.values()):
        raise RoundFailedError("no_seed_dict", "the update phase ended without a seed dictionary")
    state.seed_dict = seed_dict
    await services.enter(state.record.with_phase(Phase.SUM2))


async def reconcile(services: Services) -> None:
    """Make the in-memory aggregate hold exactly the updates the store accepted.

    An `add_update` whose script ran in Redis but whose reply was lost was answered 503, so
    its model is in the store (and its seeds go into the published seed dictionary) but not
    in memory. Unmasking the in-memory sum with a mask over all stored seeds would publish
    garbage, so before the seed dictionary is published (and when the store comes back after
    an outage) the aggregate is rebuilt from the store whenever the counts differ.
    """
    state, store = services.state, services.store
    if state.aggregation is None or not services.keeps_models:
        return
    if await store.update_count() == state.aggregation.nb_models:
        return
    try:
        state.aggregation = await rebuild_aggregate(services)
    except XaynetError as failure:
        raise RoundFailedError(
            "restore_failed", f"the stored round is inconsistent: {failure.message}"
        ) from None
    if state.phase is Phase.UPDATE:  # later phases' accepted_pks are their own senders
        state.accepted_pks = await store.update_participants()
    state.counters[Phase.UPDATE].accepted = state.aggregation.nb_models
    log.warning(
        "the store holds updates whose answers were lost: the aggregate was rebuilt from it",
        extra={"round_id": state.record.round_id, "models": state.aggregation.nb_models},
    )


async def rebuild_aggregate(services: Services) -> Aggregation:
    """The aggregate of every update the store accepted: the folded sum plus the logged models."""
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
