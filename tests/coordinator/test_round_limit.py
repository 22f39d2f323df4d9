"""`[pet] max_rounds`: the coordinator stops after N global models, counted in the store.

The operator's `rounds: N` relies on this: whether or not anything watches it, and however
often it is killed, the coordinator publishes N models and accepts no message afterwards.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.coordinator.rounds import LENGTH, HandRound, complete_round, wait_phase
from tests.pet_client import PetClient, keys_for, sealed
from tests.processes import (
    CoordinatorProcess,
    coordinator_process,
    free_port,
    http_get,
    pet_config,
    redis_server,
    wait_until,
)
from xaynet.sdk.tasks import Task, compose_sum


def _config(port: int, redis_url: str) -> str:
    return pet_config(LENGTH, port=port, redis_url=redis_url, sum_prob=0.5, times=(0, 0, 0), max_time=300)


def _restart(coordinator: CoordinatorProcess) -> None:
    coordinator.kill(signal.SIGKILL)
    assert coordinator.process is not None and coordinator.process.returncode == -signal.SIGKILL
    coordinator.start()
    wait_until(lambda: http_get(coordinator.url + "/readyz")[0] == 200, 30, "the restarted coordinator")


def _metric(coordinator: CoordinatorProcess, line_start: str) -> float:
    code, body = http_get(coordinator.url + "/metrics")
    assert code == 200
    for line in body.decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {line_start}")


def test_three_rounds_then_nothing_across_kill_9(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        port = free_port()
        env = {"XAYNET_PET__MAX_ROUNDS": "3"}
        with coordinator_process(tmp_path, _config(port, redis.url), port, env=env) as coordinator:
            first = complete_round(coordinator)
            status = coordinator.status()
            assert (status["rounds_completed"], status["max_rounds"], status["finished"]) == (1, 3, False)

            _restart(coordinator)  # between rounds: the count comes back from the store
            assert coordinator.status()["rounds_completed"] == 1
            second = complete_round(coordinator)
            assert second > first

            # round 3 is interrupted in Sum2, resumed, and completed
            client = PetClient(coordinator.url)
            third = int(wait_phase(coordinator, "sum")["round_id"])
            hand = HandRound(client, client.params())
            assert hand.send_sum() == "accepted"
            wait_phase(coordinator, "update", third)
            assert hand.send_updates(3) == ["accepted"] * 3
            wait_phase(coordinator, "sum2", third)
            _restart(coordinator)
            assert coordinator.status()["rounds_completed"] == 2
            assert hand.send_sum2() == "accepted"
            wait_until(lambda: coordinator.status()["finished"], 30, "the third model")

            status = coordinator.status()
            assert (status["rounds_completed"], status["finished"]) == (3, True)
            assert (status["round_id"], status["phase"]) == (third, "idle")
            assert status["global_model"]["round_id"] == third
            assert _metric(coordinator, 'xaynet_rounds_total{result="completed"}') == 3

            # no 4th round: not after a kill -9 either, and any message is refused
            params = client.params()
            _restart(coordinator)
            status = coordinator.status()
            assert (status["round_id"], status["phase"], status["finished"]) == (third, "idle", True)
            assert client.params() == params, "no new round was started"
            keys = keys_for(params, Task.SUM, avoid={hand.summer.public})
            answer = client.post(sealed(keys, params, compose_sum(keys, params, hand.summer_ephemeral)))
            assert (answer.status, answer.result, answer.reason) == (200, "rejected", "rounds_finished")
            assert "3 rounds" in answer.body["detail"]
            assert _metric(coordinator, 'xaynet_rounds_total{result="completed"}') == 3
            assert "all 3 rounds are complete" in coordinator.logs()
