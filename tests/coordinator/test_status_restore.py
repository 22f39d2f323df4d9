"""After kill -9, `/status` and `/metrics` show what the store holds, not zeros.

The round in progress shows the accepted counts of its earlier phases too (they are read
back from the store), and the counters that must outlive a process — rounds completed,
messages accepted — continue from the stored totals instead of restarting at 0.
"""

from __future__ import annotations

import signal
from pathlib import Path

from tests.coordinator.rounds import LENGTH, HandRound, complete_round, wait_phase
from tests.pet_client import PetClient
from tests.processes import (
    CoordinatorProcess,
    coordinator_process,
    free_port,
    http_get,
    pet_config,
    redis_server,
    wait_until,
)


def _metrics(coordinator: CoordinatorProcess) -> dict[str, float]:
    code, body = http_get(coordinator.url + "/metrics")
    assert code == 200
    values = {}
    for line in body.decode().splitlines():
        if line.startswith(("xaynet_messages_total{", "xaynet_rounds_total{")):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def _accepted(metrics: dict[str, float], phase: str) -> float:
    return metrics.get(f'xaynet_messages_total{{outcome="accepted",phase="{phase}",reason="ok"}}', 0.0)


def test_status_and_counters_after_kill_9(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        port = free_port()
        config = pet_config(
            LENGTH, port=port, redis_url=redis.url, sum_prob=0.5, times=(0, 0, 0), max_time=300
        )
        with coordinator_process(tmp_path, config, port) as coordinator:
            complete_round(coordinator)
            client = PetClient(coordinator.url)
            round_id = int(wait_phase(coordinator, "sum")["round_id"])
            hand = HandRound(client, client.params())
            assert hand.send_sum() == "accepted"
            wait_phase(coordinator, "update", round_id)
            assert hand.send_updates(3) == ["accepted"] * 3
            before = wait_phase(coordinator, "sum2", round_id)
            metrics_before = _metrics(coordinator)

            coordinator.kill(signal.SIGKILL)
            coordinator.start()
            wait_until(
                lambda: http_get(coordinator.url + "/readyz")[0] == 200, 30, "the restarted coordinator"
            )
            after = coordinator.status()
            assert (after["round_id"], after["phase"]) == (round_id, "sum2")
            assert {p: c["accepted"] for p, c in after["counts"].items()} == {
                "sum": 1,
                "update": 3,
                "sum2": 0,
            }
            assert after["sum_participants"] == before["sum_participants"] == 1
            assert (after["rounds_completed"], after["rounds_failed"]) == (1, 0)

            metrics = _metrics(coordinator)
            assert metrics['xaynet_rounds_total{result="completed"}'] == 1
            for phase, expected in (("sum", 2), ("update", 6), ("sum2", 1)):
                assert _accepted(metrics_before, phase) == expected
                assert _accepted(metrics, phase) == expected, phase

            assert hand.send_sum2() == "accepted"
            wait_until(
                lambda: coordinator.status()["rounds_completed"] == 2, 30, "the resumed round to complete"
            )
            assert _accepted(_metrics(coordinator), "sum2") == 2
