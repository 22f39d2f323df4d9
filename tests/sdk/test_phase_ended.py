"""Work whose phase ended is dropped: a Sum2 derivation stops between masks, and neither a late
updater nor a late sum participant posts (their messages would only be discarded)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.pet_client import PetClient, keys_for
from tests.processes import coordinator_process, free_port, pet_config, wait_until
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, seal
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.sdk import Events, Participant, PollSchedule, State, Task
from xaynet.sdk.client import PostAnswer
from xaynet.sdk.tasks import PhaseEndedError, compose_sum, compose_sum2

FAST = PollSchedule(minimum=0.05, maximum=0.2)


class _SetAfter(threading.Event):
    """Reads as set from its `n`-th look on: the phase "ends" after exactly n masks."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.looks, self.n = 0, n

    def is_set(self) -> bool:
        self.looks += 1
        return self.looks > self.n


def test_sum2_derivation_stops_between_masks() -> None:
    ephemeral = EncryptKeyPair.generate()
    params = RoundParameters(
        EncryptKeyPair.generate().public, 0.01, 1.0, bytes(32), MaskConfigPair.same(DEFAULT_CONFIG), 1000
    )
    seeds = {SigningKeyPair.generate().public: seal(ephemeral.public, os.urandom(32)) for _ in range(10)}
    keys = SigningKeyPair.generate()
    stop = _SetAfter(3)
    with pytest.raises(PhaseEndedError, match="after 3 of 10 masks"):
        compose_sum2(keys, params, ephemeral, seeds, stop=stop)
    assert stop.looks == 4  # derived 3 masks, looked once more, and stopped: not 10
    whole = compose_sum2(keys, params, ephemeral, seeds, stop=threading.Event())
    assert len(whole.model_mask.vect) == 1000


def test_late_participants_drop_their_work_and_post_nothing(tmp_path: Path) -> None:
    """An updater (and a sum participant) told its phase ended composes, then drops the message:
    the round completes with the others' models only, and nothing of theirs reached the coordinator
    after their sum message."""
    port = free_port()
    config = pet_config(
        4, port=port, min_sum_count=2, times=(1, 1, 2), max_time=60
    )  # sum2 ≥ 2 s: both see /seeds
    with coordinator_process(tmp_path, config, port) as coordinator:
        client = PetClient(coordinator.url)
        params = client.params()
        summers = [keys_for(params, Task.SUM) for _ in range(2)]
        updaters = [keys_for(params, Task.UPDATE) for _ in range(4)]
        models = [np.full(4, v, dtype=np.float32) for v in (0.25, 0.5, -0.75, 0.9)]
        posted: dict[int, list[Task]] = {i: [] for i in range(6)}
        dropped: dict[int, list[str]] = {i: [] for i in range(6)}

        def events(i: int) -> Events:
            def sent(task: Task, _answer: PostAnswer, _size: int) -> None:
                posted[i].append(task)

            return Events(sent=sent, dropped=lambda _task, reason: dropped[i].append(reason))

        late = {1: "sum2", 5: "update"}  # participant index -> the phase it is told has ended

        def ended(i: int) -> object:
            return lambda phase, _seed: late.get(i) == phase

        async def scenario() -> None:
            participants = [
                Participant(coordinator.url, keys=k, schedule=FAST, events=events(i), phase_ended=ended(i))
                for i, k in enumerate(summers)
            ] + [
                Participant(
                    coordinator.url,
                    keys=k,
                    schedule=FAST,
                    events=events(i + 2),
                    phase_ended=ended(i + 2),
                    model_provider=lambda _p, m=m: m,
                )
                for i, (k, m) in enumerate(zip(updaters, models, strict=True))
            ]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(p.run(stop)) for p in participants]
            await asyncio.to_thread(
                wait_until, lambda: coordinator.status()["rounds_completed"] >= 1, 60, "the round to complete"
            )
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(scenario())
        last = coordinator.status()["last_round"]["counts"]
        model = client.model()
    assert posted[5] == [] and dropped[5] == ["update ended while composing"]
    assert set(posted[1]) == {Task.SUM} and len(dropped[1]) == 1  # its sum message, no sum2
    assert (last["sum"]["accepted"], last["update"]["accepted"], last["sum2"]["accepted"]) == (2, 3, 1)
    assert model is not None
    expected = np.mean(models[:3], axis=0)
    assert np.allclose(model.to_numpy(params.mask_config.vect.data_type), expected, atol=1e-9)


async def test_an_answered_message_is_not_kept() -> None:
    """A participant keeps its message's plaintexts only for re-sends: once answered they go
    (at 10,000 participants × 100k weights they were 5 GB per driver process)."""
    from aiohttp import web

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(headers={"X-Xaynet-Result": "accepted"})

    app = web.Application()
    app.router.add_post("/message", accept)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        keys, ephemeral = SigningKeyPair.generate(), EncryptKeyPair.generate()
        params = RoundParameters(
            EncryptKeyPair.generate().public, 0.5, 1.0, bytes(32), MaskConfigPair.same(DEFAULT_CONFIG), 4
        )
        participant = Participant(f"http://127.0.0.1:{port}", keys=keys, max_message_size=200)
        participant._queue(params, compose_sum(keys, params, ephemeral), State.AWAITING)
        assert len(participant.round.message) > 1  # chunked, kept until answered
        assert await participant._send(params)
        assert participant.state is State.AWAITING and participant.round.message == []
        await participant.close()
    finally:
        await runner.cleanup()
