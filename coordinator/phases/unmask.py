"""Unmask: pick the mask most sum participants agree on, unmask, publish the global model."""

from __future__ import annotations

import hashlib

from xaynet.coordinator.services import Services, log
from xaynet.coordinator.state import RoundFailedError
from xaynet.coordinator.store.base import LeaseLostError, Phase, StoredModel
from xaynet.core.errors import XaynetError
from xaynet.core.mask.object import MaskObject


def choose_mask(best: list[tuple[bytes, int]]) -> bytes:
    """The mask with a strictly highest vote count (ties fail the round, PHASES.md §4.5)."""
    if not best:
        raise RoundFailedError("no_mask", "no sum participant sent a mask")
    if len(best) > 1 and best[0][1] == best[1][1]:
        raise RoundFailedError("ambiguous_masks", f"two different masks have {best[0][1]} votes each")
    return best[0][0]


async def run(services: Services) -> None:
    state = services.state
    async with state.lock:
        aggregation = state.aggregation
        if aggregation is None:
            raise RoundFailedError("no_aggregate", "nothing was aggregated this round")
        chosen = choose_mask(await services.store.best_masks())
        try:
            mask = MaskObject.from_bytes(chosen)
            model = aggregation.unmask(mask)
        except XaynetError as error:
            raise RoundFailedError(error.reason, f"unmasking failed: {error.message}") from error
        body = model.to_bincode()
        stored = StoredModel(state.record.round_id, body, hashlib.sha256(body).hexdigest())
        if services.archive is not None:  # S3: queued in the store before publishing (a crash redoes
            params = state.record.params  # Unmask, which queues the same key and bytes again)
            await services.archive.enqueue(
                stored.round_id,
                params.seed,
                body,
                mask_config=str(params.mask_config.vect),
                model_length=params.model_length,
                updates=aggregation.nb_models,
            )
        await services.store.save_model(stored)
        if services.exporter is not None:
            if services.lease is not None and not services.lease.accepting():
                raise LeaseLostError("the lease was not renewed in time: the model is not exported")
            services.exporter.write(stored.round_id, body, stored.checksum)
        state.model = stored
        # Counted in the store once per round id: a crash before Idle redoes Unmask, not the count.
        counted = state.rounds_completed
        totals = await services.store.add_round_totals(
            state.record.round_id, {"rounds_completed": 1, **state.round_counts()}
        )
        services.apply_totals(totals)
        state.last_round = {
            "round_id": state.record.round_id,
            "counts": {phase.value: counter.as_dict() for phase, counter in state.counters.items()},
            "sum_participants": len(state.sum_dict or {}),
            "models_aggregated": aggregation.nb_models,
            "phase_seconds": dict(state.phase_durations),
            "checksum": f"sha256:{stored.checksum}",
        }
        services.metrics.rounds.labels("completed").inc(state.rounds_completed - counted)
        services.metrics.model_round.set(stored.round_id)
        log.info(
            "global model published",
            extra={"round_id": stored.round_id, "models": aggregation.nb_models, "checksum": stored.checksum},
        )
        await services.enter(state.record.with_phase(Phase.IDLE))
        if state.last_round is not None:
            state.last_round["phase_seconds"] = dict(state.phase_durations)
