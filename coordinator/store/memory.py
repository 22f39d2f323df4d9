"""The embedded store: plain dictionaries, gone with the process."""

from __future__ import annotations

from xaynet.coordinator.store.base import (
    AggregateSnapshot,
    MaskOutcome,
    RoundRecord,
    StoredModel,
    UpdateOutcome,
)


class MemoryStore:
    """In-process state. Each method runs without awaiting, so each is atomic on the loop."""

    kind = "memory"

    def __init__(self) -> None:
        self._round: RoundRecord | None = None
        self._model: StoredModel | None = None
        self.clear_round_data_now()

    def clear_round_data_now(self) -> None:
        self._sum_dict: dict[bytes, bytes] = {}
        self._seeds: dict[bytes, dict[bytes, bytes]] = {}
        self._updaters: set[bytes] = set()
        self._unfolded: dict[bytes, bytes] = {}
        self._snapshot: AggregateSnapshot | None = None
        self._masks: dict[bytes, int] = {}
        self._mask_senders: set[bytes] = set()

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load_round(self) -> RoundRecord | None:
        return self._round

    async def save_round(self, record: RoundRecord) -> None:
        self._round = record

    async def clear_round_data(self) -> None:
        self.clear_round_data_now()

    async def wipe(self) -> None:
        self._round = None
        self._model = None
        self.clear_round_data_now()

    async def add_sum_participant(self, pk: bytes, ephm_pk: bytes) -> bool:
        if pk in self._sum_dict:
            return False
        self._sum_dict[pk] = ephm_pk
        return True

    async def sum_dict(self) -> dict[bytes, bytes]:
        return dict(self._sum_dict)

    async def add_update(
        self, pk: bytes, local_seed_dict: dict[bytes, bytes], masked_model: bytes
    ) -> UpdateOutcome:
        if len(local_seed_dict) != len(self._sum_dict):
            return UpdateOutcome.LENGTH_MISMATCH
        if any(sum_pk not in self._sum_dict for sum_pk in local_seed_dict):
            return UpdateOutcome.UNKNOWN_SUM_PARTICIPANT
        if pk in self._updaters:
            return UpdateOutcome.DUPLICATE
        self._updaters.add(pk)
        for sum_pk, seed in local_seed_dict.items():
            self._seeds.setdefault(sum_pk, {})[pk] = seed
        # The in-memory store has nothing to resume from; keeping models would only cost RAM.
        return UpdateOutcome.ACCEPTED

    async def update_count(self) -> int:
        return len(self._updaters)

    async def update_participants(self) -> set[bytes]:
        return set(self._updaters)

    async def stored_model(self, pk: bytes) -> bytes | None:
        return self._unfolded.get(pk)

    async def seed_dict(self) -> dict[bytes, dict[bytes, bytes]]:
        return {sum_pk: dict(self._seeds.get(sum_pk, {})) for sum_pk in self._sum_dict}

    async def unfolded_models(self) -> dict[bytes, bytes]:
        return dict(self._unfolded)

    async def fold(self, snapshot: AggregateSnapshot, folded: list[bytes]) -> None:
        self._snapshot = snapshot
        for pk in folded:
            self._unfolded.pop(pk, None)

    async def aggregate_snapshot(self) -> AggregateSnapshot | None:
        return self._snapshot

    async def add_mask(self, pk: bytes, mask: bytes) -> MaskOutcome:
        if pk not in self._sum_dict:
            return MaskOutcome.UNKNOWN_SUM_PARTICIPANT
        if pk in self._mask_senders:
            return MaskOutcome.DUPLICATE
        self._mask_senders.add(pk)
        self._masks[mask] = self._masks.get(mask, 0) + 1
        return MaskOutcome.ACCEPTED

    async def mask_senders(self) -> set[bytes]:
        return set(self._mask_senders)

    async def best_masks(self) -> list[tuple[bytes, int]]:
        return sorted(self._masks.items(), key=lambda item: item[1], reverse=True)[:2]

    async def unique_masks(self) -> int:
        return len(self._masks)

    async def save_model(self, model: StoredModel) -> None:
        self._model = model

    async def load_model(self) -> StoredModel | None:
        return self._model
