"""Our SDK re-sends the whole message when the last chunk's answer says the coordinator lost
the earlier chunks (evicted under its multipart byte budget): the update still counts.

A real coordinator process with a small budget; while one participant is between its chunks,
self-made keys flood the buffer with first chunks, evicting that participant's message.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests import models
from tests.pet_client import PetClient, keys_for, sealed
from tests.processes import coordinator_process, free_port, http_post, pet_config, wait_until
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import SigningKeyPair, seal
from xaynet.core.mask.model import GlobalModel
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.envelope import sign_message
from xaynet.core.message.header import Tag
from xaynet.sdk import Participant, PollSchedule, Task
from xaynet.sdk.client import PostAnswer
from xaynet.sdk.participant import Events
from xaynet.sdk.tasks import compose_update

FAST = PollSchedule(minimum=0.05, maximum=0.2)
HEAD, TOTAL = 4, 3
BUDGET = 50_000


def flood(url: str, params: RoundParameters, count: int = 6) -> None:
    for _ in range(count):
        keys = SigningKeyPair.generate()
        chunk = ChunkPayload(0, secrets.randbelow(1 << 16), False, secrets.token_bytes(10_000))
        body = seal(params.pk, sign_message(keys, params.pk, Tag.UPDATE, chunk.to_bytes(), multipart=True))
        assert http_post(url + "/message", body)[0] == 200


def test_the_whole_message_is_resent_when_its_chunks_were_evicted(tmp_path: Path) -> None:
    port = free_port()
    config = pet_config(
        HEAD + TOTAL,
        port=port,
        sum_prob=0.4,
        min_update_count=3,
        times=(1, 0, 0),
        max_time=120,
        extra=f"[multipart]\nmax_buffer_bytes = {BUDGET}\n",
    )
    with coordinator_process(tmp_path, config, port) as coordinator:
        client = PetClient(coordinator.url)
        params = client.params()
        wait_until(lambda: coordinator.status()["phase"] == "sum", 30, "the sum phase")
        params = client.params()
        summer = keys_for(params, Task.SUM)
        updaters = [keys_for(params, Task.UPDATE) for _ in range(TOTAL)]
        answers: list[PostAnswer] = []

        def evict_between_chunks(task: Task, answer: PostAnswer, _size: int) -> None:
            if answers and answers[-1].result == "accepted":
                return  # the update of round 1 is done (later rounds do not matter here)
            answers.append(answer)
            if [a.result for a in answers] == ["buffered"]:  # between the first and last chunk
                flood(coordinator.url, client.params())

        async def scenario() -> None:
            participants = [Participant(coordinator.url, keys=summer, schedule=FAST, max_message_size=400)]
            for index, keys in enumerate(updaters):
                weights = np.array(models.local_model(index, HEAD, TOTAL), dtype=np.float32)
                participants.append(
                    Participant(
                        coordinator.url,
                        keys=keys,
                        schedule=FAST,
                        max_message_size=400,
                        model_provider=lambda _p, w=weights: w,
                        events=Events(sent=evict_between_chunks) if index == 0 else None,
                    )
                )
            stop = asyncio.Event()
            tasks = [asyncio.create_task(p.run(stop)) for p in participants]
            await asyncio.to_thread(
                wait_until, lambda: coordinator.status()["rounds_completed"] >= 1, 90, "the round to complete"
            )
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(scenario())
        body = client.model()
        assert body is not None
        code_model = coordinator.status()["global_model"]
        assert code_model is not None

    reasons = [a.reason for a in answers]
    assert "chunks_missing" in reasons, reasons
    assert answers[-1].result == "accepted", answers
    assert isinstance(body, GlobalModel)
    assert models.check_global_model(body, HEAD, TOTAL) == {0, 1, 2}


async def test_a_503_is_retried_after_the_time_its_retry_after_names() -> None:
    """Capacity and store outages are `503` + `Retry-After`: a retry, never a final answer."""
    from aiohttp import ClientSession, web

    from xaynet.sdk.client import CoordinatorClient

    seen: list[float] = []

    async def message(request: web.Request) -> web.Response:
        seen.append(asyncio.get_running_loop().time())
        if len(seen) == 1:
            headers = {
                "Retry-After": "0.5",
                "X-Xaynet-Result": "unavailable",
                "X-Xaynet-Reason": "multipart_capacity",
            }
            return web.json_response({"result": "unavailable"}, status=503, headers=headers)
        return web.Response(status=200, headers={"X-Xaynet-Result": "accepted"})

    app = web.Application()
    app.router.add_post("/message", message)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ClientSession() as session:
            answer = await CoordinatorClient(f"http://127.0.0.1:{port}", session).post_message(b"x")
    finally:
        await runner.cleanup()
    assert (answer.status, answer.result) == (200, "accepted")
    assert len(seen) == 2
    assert seen[1] - seen[0] >= 0.5, "the client waited what Retry-After said"


class _LosingCoordinator:
    """Answers every last chunk `503 chunks_missing` `losses` times (an attacker keeps
    evicting the message), then `accepted`; records every body posted."""

    def __init__(self, losses: int, chunks: int) -> None:
        self.losses, self.chunks = losses, chunks
        self.posted: list[bytes] = []

    async def post_message(self, body: bytes) -> PostAnswer:
        self.posted.append(body)
        if body != b"chunk-%d" % (self.chunks - 1):
            return PostAnswer(200, "buffered", "chunk_buffered")
        if self.losses:
            self.losses -= 1
            return PostAnswer(503, "unavailable", "chunks_missing")
        return PostAnswer(200, "accepted", "")


async def test_a_message_whose_chunks_keep_getting_lost_is_never_taken_as_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from xaynet.sdk import participant as module

    chunks, losses = 3, module.MAX_WHOLE_RESENDS + 4
    monkeypatch.setattr(module, "seal", lambda _pk, plain: plain)
    participant = Participant("http://127.0.0.1:9/")
    coordinator = _LosingCoordinator(losses, chunks)
    participant._client = coordinator  # type: ignore[assignment]
    message = [b"chunk-%d" % i for i in range(chunks)]
    participant.round.pending, participant.round.message = list(message), list(message)
    participant.round.state, participant.round.after_sending = module.State.SENDING, module.State.AWAITING
    params = SimpleNamespace(pk=bytes(32))  # only its key is used, and `seal` is a no-op here
    ticks = 0
    while participant.state is module.State.SENDING:
        ticks += 1
        assert ticks <= losses + 1, "every tick re-sends the message until an answer is final"
        await participant._send(params)  # type: ignore[arg-type]
        if coordinator.losses:
            assert participant.state is module.State.SENDING, "a lost message is not taken as sent"
    assert coordinator.posted == message * (losses + 1), "always the whole message, never a part"
    assert participant.state is module.State.AWAITING


def test_a_refusal_before_the_last_chunk_stops_the_rest_of_the_message(tmp_path: Path) -> None:
    """The Update phase ends between our participant's chunks (other updates fill it): the
    next chunk is refused (`wrong_phase`), a final answer; the rest would be refused too, so
    the participant sends nothing more of that message."""
    port = free_port()
    length = 300
    config = pet_config(
        length, port=port, sum_prob=0.4, min_update_count=3, max_counts=(100, 3, 100),
        times=(1, 0, 0), max_time=120,
    )  # fmt: skip
    with coordinator_process(tmp_path, config, port) as coordinator:
        client = PetClient(coordinator.url)
        wait_until(lambda: coordinator.status()["phase"] == "sum", 30, "the sum phase")
        params = client.params()
        summer, ours = keys_for(params, Task.SUM), keys_for(params, Task.UPDATE)
        others = [keys_for(params, Task.UPDATE) for _ in range(3)]
        first_round: list[PostAnswer] = []

        rounds_seen: list[bytes] = []

        def fill_the_phase_between_chunks(task: Task, answer: PostAnswer, _size: int) -> None:
            if task is not Task.UPDATE or len(rounds_seen) > 1:
                return  # only the first round's message matters
            first_round.append(answer)
            if len(first_round) == 1:  # after the first chunk, before the second
                sums = client.sums()
                assert sums is not None
                for other in others:
                    payload = compose_update(other, params, sums, np.zeros(length, dtype=np.float32))
                    assert client.post(sealed(other, params, payload)).result == "accepted"
                wait_until(lambda: coordinator.status()["phase"] != "update", 30, "the update phase to end")

        async def scenario() -> None:
            weights = np.ones(length, dtype=np.float32)
            participants = [
                Participant(coordinator.url, keys=summer, schedule=FAST),
                Participant(
                    coordinator.url, keys=ours, schedule=FAST, max_message_size=400,
                    model_provider=lambda _p: weights,
                    events=Events(
                        new_round=lambda p: rounds_seen.append(p.seed), sent=fill_the_phase_between_chunks
                    ),
                ),
            ]  # fmt: skip
            stop = asyncio.Event()
            tasks = [asyncio.create_task(p.run(stop)) for p in participants]
            await asyncio.to_thread(
                wait_until, lambda: len(rounds_seen) > 1, 60, "the participant to see the next round"
            )
            stop.set()
            await asyncio.gather(*tasks)

        asyncio.run(scenario())

    assert [(a.result, a.reason) for a in first_round] == [
        ("buffered", "chunk_buffered"),
        ("rejected", "wrong_phase"),
    ]
