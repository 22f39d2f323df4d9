"""A message accepted in its phase and sent again after the phase ended (its first answer was
lost) is answered `accepted` again, and counts once; anything else out of its phase stays
`wrong_phase`, and a message of the round before is `round_ended`.

Before, the retry was answered `rejected/wrong_phase`: our SDK then took an update that had
counted for a refused one (test-drive's exact check reported a wrong mean), and operators saw
refusals that were not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.coordinator.rounds import MODELS, HandRound, wait_phase
from tests.pet_client import PetClient, keys_for, sealed
from tests.processes import (
    CoordinatorProcess,
    coordinator_process,
    free_port,
    pet_config,
    redis_server,
    wait_until,
)
from xaynet.core.crypto import seal
from xaynet.core.message.envelope import encode_messages
from xaynet.sdk.tasks import Task, compose_update

LENGTH = len(MODELS[0])


@contextlib.contextmanager
def _coordinator(tmp_path: Path, store: str) -> Iterator[CoordinatorProcess]:
    port = free_port()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server(tmp_path)).url if store == "redis" else None
        config = pet_config(LENGTH, port=port, redis_url=url, sum_prob=0.4, times=(0, 0, 0), max_time=120)
        yield stack.enter_context(coordinator_process(tmp_path, config, port))


def _accepted(coordinator: CoordinatorProcess, phase: str) -> int:
    return int(coordinator.status()["counts"][phase]["accepted"])


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_retry_after_the_phase_ended_is_answered_accepted_and_counts_once(
    tmp_path: Path, store: str
) -> None:
    with _coordinator(tmp_path, store) as coordinator:
        client = PetClient(coordinator.url)
        round_id = int(wait_phase(coordinator, "sum")["round_id"])
        hand = HandRound(client, client.params())
        params = hand.params
        assert hand.send_sum() == "accepted"
        wait_phase(coordinator, "update", round_id)
        sums = client.sums()
        assert sums is not None
        keys = [keys_for(params, Task.UPDATE) for _ in range(3)]
        payloads = [compose_update(k, params, sums, m) for k, m in zip(keys, MODELS, strict=False)]
        single = sealed(keys[0], params, payloads[0])
        chunks = [seal(params.pk, m) for m in encode_messages(keys[1], params.pk, payloads[1], 300)]
        assert len(chunks) >= 3
        assert client.post(single).result == "accepted"
        assert [client.post(c).result for c in chunks] == ["buffered"] * (len(chunks) - 1) + ["accepted"]
        assert client.post(sealed(keys[2], params, payloads[2])).result == "accepted"  # the third ends Update
        wait_phase(coordinator, "sum2", round_id)

        # the answers to the single update and to the last chunk were "lost": both are sent again
        for body in (single, chunks[-1]):
            again = client.post(body)
            assert (again.status, again.result, again.reason) == (200, "accepted", "already_accepted")
        # not an accepted message: a middle chunk, another update of an accepted participant, a newcomer
        late = keys_for(params, Task.UPDATE)
        others = [
            chunks[1],
            sealed(keys[0], params, compose_update(keys[0], params, sums, MODELS[3])),
            sealed(late, params, compose_update(late, params, sums, MODELS[3])),
        ]
        for body in others:
            refused = client.post(body)
            assert (refused.status, refused.result, refused.reason) == (200, "rejected", "wrong_phase")
        assert _accepted(coordinator, "update") == 3

        assert hand.send_sum2() == "accepted"
        wait_until(lambda: coordinator.status()["rounds_completed"] >= 1, 30, "the round to complete")
        model = client.model()
        assert model is not None
        expected = np.mean(np.array(MODELS[:3], dtype=np.float64), axis=0)
        assert np.allclose([float(v) for v in model.as_fractions()], expected, atol=1e-9), "counted once"

        wait_phase(coordinator, "sum", round_id + 1)
        ended = client.post(single)
        assert (ended.status, ended.result, ended.reason) == (200, "rejected", "round_ended")
