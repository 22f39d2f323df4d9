"""Hand-driven PET rounds against a coordinator process: one step per phase, each checked.

With `times=(0, 0, 0)` a phase ends as soon as it has its minimum, so a test knows exactly
which message lands in which phase (no participant timing involved).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.pet_client import PetClient, ephemeral, keys_for, sealed
from tests.processes import CoordinatorProcess, wait_until
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair
from xaynet.sdk.tasks import Task, compose_sum, compose_sum2, compose_update

LENGTH = 4
MODELS = [[0.5, -0.25, 1.0, 0.0], [0.25, 0.75, -1.0, 0.5], [-0.5, 0.5, 0.0, 1.0], [1.0, 0.0, 0.5, -0.5]]


def wait_phase(coordinator: CoordinatorProcess, phase: str, round_id: int | None = None) -> dict[str, Any]:
    def there() -> dict[str, Any] | None:
        status = coordinator.status()
        if status["phase"] == phase and (round_id is None or status["round_id"] == round_id):
            return status
        return None

    result: dict[str, Any] = wait_until(there, 30, f"phase {phase} (round {round_id})")
    return result


@dataclass
class HandRound:
    """The participants of one round, made for its `/params`."""

    client: PetClient
    params: RoundParameters
    summer: SigningKeyPair = field(init=False)
    summer_ephemeral: EncryptKeyPair = field(init=False)
    updaters: list[SigningKeyPair] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.summer = keys_for(self.params, Task.SUM)
        self.summer_ephemeral = ephemeral()

    def send_sum(self) -> str:
        payload = compose_sum(self.summer, self.params, self.summer_ephemeral)
        return self.client.post(sealed(self.summer, self.params, payload)).result

    def send_updates(self, count: int) -> list[str]:
        """Each update participant fetches `/sums` itself, then sends (as real ones do)."""
        results = []
        for _ in range(count):
            sums = self.client.sums()
            assert sums is not None, "/sums is published when Sum ends"
            keys = keys_for(self.params, Task.UPDATE, avoid={k.public for k in self.updaters})
            self.updaters.append(keys)
            model = MODELS[(len(self.updaters) - 1) % len(MODELS)]
            payload = compose_update(keys, self.params, sums, model)
            results.append(self.client.post(sealed(keys, self.params, payload)).result)
        return results

    def send_sum2(self) -> str:
        seeds = self.client.seeds(self.summer.public)
        assert seeds is not None, "/seeds is published when Update ends"
        payload = compose_sum2(self.summer, self.params, self.summer_ephemeral, seeds)
        return self.client.post(sealed(self.summer, self.params, payload)).result


def complete_round(coordinator: CoordinatorProcess, updates: int = 3) -> int:
    """Drive one whole round (1 sum, `updates` updates, 1 mask); return its round id."""
    client = PetClient(coordinator.url)
    status = wait_phase(coordinator, "sum")
    round_id = int(status["round_id"])
    done = int(status["rounds_completed"])
    hand = HandRound(client, client.params())
    assert hand.send_sum() == "accepted"
    wait_phase(coordinator, "update", round_id)
    assert hand.send_updates(updates) == ["accepted"] * updates
    wait_phase(coordinator, "sum2", round_id)
    assert hand.send_sum2() == "accepted"
    wait_until(lambda: coordinator.status()["rounds_completed"] > done, 30, f"round {round_id} to complete")
    return round_id
