"""The asyncio participant: restore resumes a task, and failures end in typed errors, never hangs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from aiohttp import web

from tests.pet_client import PetClient, keys_for
from tests.processes import coordinator_process, free_port, pet_config, run_test_drive, wait_until
from xaynet.sdk import (
    CoordinatorProtocolError,
    CoordinatorUnreachableError,
    GlobalModelUnavailable,
    Participant,
    ParticipantABC,
    ParticipantInit,
    ParticipantRestore,
    PollSchedule,
    State,
    Task,
    spawn_participant,
)

FAST = PollSchedule(minimum=0.05, maximum=0.2)


def test_restored_sum_participant_finishes_its_round(tmp_path: Path) -> None:
    """Stopped while waiting for /seeds, restored from its saved state, it sends sum2."""
    port = free_port()
    config = pet_config(4, port=port, sum_prob=0.3, min_sum_count=1, times=(1, 1, 0), max_time=60)
    with coordinator_process(tmp_path, config, port) as coordinator:
        client = PetClient(coordinator.url)
        params = client.params()
        summer_keys = keys_for(params, Task.SUM)
        updater_keys = [keys_for(params, Task.UPDATE) for _ in range(3)]
        models = [np.full(4, v, dtype=np.float32) for v in (0.25, 0.5, -0.75)]

        async def scenario() -> bytes:
            summer = Participant(coordinator.url, keys=summer_keys, schedule=FAST)
            while summer.state is not State.SUM2:  # new round, select task, compose, send sum
                await summer.tick()
            saved = summer.save()
            await summer.close()  # the process "dies" here; only `saved` survives

            restored = Participant.restore(coordinator.url, saved, schedule=FAST)
            assert (restored.state, restored.task) == (State.SUM2, Task.SUM)
            assert restored.keys == summer_keys
            updaters = [
                Participant(coordinator.url, keys=k, schedule=FAST, model_provider=lambda _p, m=m: m)
                for k, m in zip(updater_keys, models, strict=True)
            ]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(p.run(stop)) for p in (restored, *updaters)]
            await asyncio.to_thread(
                wait_until, lambda: coordinator.status()["rounds_completed"] >= 1, 60, "the round to complete"
            )
            stop.set()
            await asyncio.gather(*tasks)
            return saved

        saved = asyncio.run(scenario())
        assert b'"state": "sum2"' in saved
        model = client.model()
        assert model is not None
        assert np.allclose(
            model.to_numpy(params.mask_config.vect.data_type), np.mean(models, axis=0), atol=1e-9
        )
        assert coordinator.status()["last_round"]["counts"]["sum2"]["accepted"] == 1


def test_unreachable_coordinator_raises_instead_of_hanging() -> None:
    participant = Participant(
        f"http://127.0.0.1:{free_port()}", schedule=FAST, give_up_after=1.0, request_timeout=1.0
    )
    started = time.monotonic()
    with pytest.raises(CoordinatorUnreachableError, match="GET /params"):
        asyncio.run(participant.run())
    assert time.monotonic() - started < 30


async def _garbage_server(routes: dict[str, tuple[int, bytes]]) -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.Response:
        status, body = routes.get(request.path, (404, b""))
        return web.Response(status=status, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("routes", "match"),
    [
        ({"/params": (200, b"junk")}, "round parameters does not decode"),
        ({"/params": (204, b"")}, "answered 204"),
        ({"/params": (404, b"")}, "HTTP 404"),
    ],
)
async def test_garbage_answers_raise_protocol_errors(
    routes: dict[str, tuple[int, bytes]], match: str
) -> None:
    runner, url = await _garbage_server(routes)
    try:
        participant = Participant(url, schedule=FAST, give_up_after=0.5)
        with pytest.raises(CoordinatorProtocolError, match=match):
            await asyncio.wait_for(participant.run(), 30)
    finally:
        await runner.cleanup()


async def test_a_garbage_model_body_is_reported() -> None:
    runner, url = await _garbage_server({"/model": (200, b"\x05\x00")})
    try:
        participant = Participant(url, schedule=FAST)
        with pytest.raises(CoordinatorProtocolError, match="global model does not decode"):
            await participant.global_model()
        await participant.close()
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("url", ["not a url", "mailto:x@y", "127.0.0.1:8081", "ftp://host/x"])
def test_bad_urls_fail_at_construction(url: str) -> None:
    with pytest.raises(ParticipantInit):
        Participant(url)
    with pytest.raises(ParticipantInit):
        spawn_participant(url, _Recorder)


def test_bad_saved_state_is_refused() -> None:
    with pytest.raises(ParticipantRestore):
        Participant.restore("http://127.0.0.1:1", b"\x01\x00\x00\x00garbage")
    with pytest.raises(ParticipantRestore):
        Participant.restore("http://127.0.0.1:1", b'{"version": 99}')


class _Recorder(ParticipantABC[Any, Any]):
    calls: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _Recorder.calls.append((args, kwargs))

    def train_round(self, training_input: Any) -> Any:
        return [0.0] * 4

    def serialize_training_result(self, training_result: Any) -> list[Any]:
        return list(training_result)

    def deserialize_training_input(self, global_model: list[Any]) -> Any:
        return global_model


class _Broken(_Recorder):
    def __init__(self) -> None:
        raise RuntimeError("no GPU here")


def test_wheel_defects_are_fixed() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    _Recorder.calls.clear()
    handle = spawn_participant(url, _Recorder, args=(1, 2), kwargs={"alpha": 3})
    state = handle.stop()
    assert _Recorder.calls == [((1, 2), {"alpha": 3})], "kwargs reach the constructor as keywords"
    assert isinstance(state, list)
    assert all(0 <= b < 256 for b in state)
    with pytest.raises(ParticipantInit, match="no GPU here"):
        spawn_participant(url, _Broken)
    assert issubclass(GlobalModelUnavailable, Exception)


def test_async_participant_api(tmp_path: Path) -> None:
    """spawn_async_participant: the notifier fires per round, get_global_model fetches and
    converts the model, set_local_model checks it against the round."""
    from tests.processes import http_get
    from xaynet.core.mask.config import DataType
    from xaynet.core.mask.model import GlobalModel
    from xaynet.sdk import LocalModelLengthMisMatch, spawn_async_participant

    port = free_port()
    config = pet_config(4, port=port, times=(1, 1, 0.5), max_time=30)
    with coordinator_process(tmp_path, config, port) as coordinator:
        participant, notifier = spawn_async_participant(coordinator.url)
        try:
            assert notifier.wait(30), "a new round is announced"
            assert participant.get_global_model() is None  # no round finished yet
            with pytest.raises(LocalModelLengthMisMatch):
                participant.set_local_model([0.5, 0.5])
            drive = run_test_drive(coordinator.url, rounds=1)
            assert drive.returncode == 0, drive.stdout + drive.stderr
            assert notifier.wait(30)
            code, body = http_get(coordinator.url + "/model")
            assert code == 200
            expected = GlobalModel.from_bincode(body).to_numpy(DataType.F32).tolist()
            assert participant.get_global_model() == expected
            participant.set_local_model([0.25, 0.5, -0.5, 1.0])
        finally:
            state = participant.stop()
    assert state
    assert not notifier.is_set()
