"""Our SDK's participants and the reference wheel's take part in the same rounds, and every
global model is exactly the mean of the updates it aggregated, from both kinds."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from tests import models
from tests.e2e.test_wheel_rounds import wheel_participants
from tests.processes import coordinator_process, free_port, pet_config, wait_until
from xaynet.core.mask.config import DataType
from xaynet.core.mask.model import GlobalModel
from xaynet.sdk import ParticipantABC, spawn_participant

pytest.importorskip("xaynet_sdk")

WHEEL, OURS, HEAD = 6, 6, 3
TOTAL = WHEEL + OURS


class OneHotTrainer(ParticipantABC[list[float], list[float]]):
    def __init__(self, index: int, *, received: list[list[float]]) -> None:
        self.index = index
        self.received = received

    def train_round(self, training_input: list[float] | None) -> list[float]:
        return models.local_model(self.index, HEAD, TOTAL)

    def serialize_training_result(self, training_result: list[float]) -> list[Any]:
        return training_result

    def deserialize_training_input(self, global_model: list[Any]) -> list[float]:
        return [float(x) for x in global_model]

    def on_new_global_model(self, global_model: list[float] | None) -> None:
        if global_model is not None:
            self.received.append(global_model)


def test_wheel_and_our_participants_in_the_same_rounds(tmp_path: Path) -> None:
    export = tmp_path / "models"
    received: list[list[float]] = []
    port = free_port()
    config = pet_config(HEAD + TOTAL, port=port, export=export)
    with contextlib.ExitStack() as stack:
        coordinator = stack.enter_context(coordinator_process(tmp_path, config, port))
        stack.enter_context(
            wheel_participants(
                coordinator.url, tmp_path, groups=1, first=0, count=WHEEL, total=TOTAL, head=HEAD
            )
        )
        ours = [
            spawn_participant(coordinator.url, OneHotTrainer, args=(i,), kwargs={"received": received})
            for i in range(WHEEL, TOTAL)
        ]
        try:

            def mixed_rounds() -> int:
                found = 0
                for path in export.glob("global-model-*.bin"):
                    included = models.check_global_model(
                        GlobalModel.from_bincode(path.read_bytes()), HEAD, TOTAL
                    )
                    found += bool(included & set(range(WHEEL))) and bool(included & set(range(WHEEL, TOTAL)))
                return found if found >= 2 else 0

            wait_until(mixed_rounds, 240, "two rounds that aggregate wheel and SDK updates together")
        finally:
            states = [handle.stop() for handle in ours]
    assert all(state for state in states), "stop() returns a state to restore from"
    published = [GlobalModel.from_bincode(p.read_bytes()) for p in export.glob("global-model-*.bin")]
    as_lists = [[float(x) for x in m.to_numpy(DataType.F32).tolist()] for m in published]
    assert received, "our participants received global models"
    assert all(model in as_lists for model in received)
