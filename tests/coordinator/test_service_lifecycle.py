"""Start and stop like a service: Redis may come up after the coordinator; SIGTERM/SIGINT
stop it cleanly between store writes, with one log line and exit code 0."""

from __future__ import annotations

import re
import signal
import threading
import urllib.error
from pathlib import Path

import pytest

from tests.coordinator.rounds import LENGTH, MODELS, HandRound, wait_phase
from tests.pet_client import PetClient, keys_for, sealed
from tests.processes import (
    coordinator_process,
    free_port,
    http_get,
    pet_config,
    redis_server,
    wait_until,
)
from xaynet.sdk.tasks import Task, compose_update


def _config(port: int, redis_url: str, min_update_count: int = 3) -> str:
    return pet_config(
        LENGTH,
        port=port,
        redis_url=redis_url,
        sum_prob=0.5,
        min_update_count=min_update_count,
        times=(0, 0, 0),
        max_time=300,
    )


def test_coordinator_started_before_redis_waits_for_it(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        redis.stop()  # the port is known, nothing listens yet
        port = free_port()
        with coordinator_process(tmp_path, _config(port, redis.url), port) as coordinator:
            assert http_get(coordinator.url + "/healthz")[0] == 200
            code, body = http_get(coordinator.url + "/readyz")
            assert code == 503 and b"store_unavailable" in body, body
            assert http_get(coordinator.url + "/params")[0] == 503
            assert http_get(coordinator.url + "/status")[0] == 503
            # several attempts, one warning line
            wait_until(
                lambda: len(re.findall(r'"attempt": [3-9]', coordinator.logs())) > 0, 60, "three attempts"
            )
            assert coordinator.logs().count("the store is not reachable") == 1
            assert coordinator.process is not None and coordinator.process.poll() is None

            redis.start()
            wait_until(
                lambda: http_get(coordinator.url + "/readyz")[0] == 200, 60, "/readyz after Redis came up"
            )
            wait_phase(coordinator, "sum")
            assert "the store answers" in coordinator.logs()
            # the test Redis fsyncs once a second: the coordinator says what that risks
            assert "fsyncs its append-only file 'everysec', not 'always'" in coordinator.logs()
        assert "Traceback" not in coordinator.logs()


def test_sigterm_while_waiting_for_redis_exits_0(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        redis.stop()
        port = free_port()
        with coordinator_process(tmp_path, _config(port, redis.url), port) as coordinator:
            wait_until(lambda: "the store is not reachable" in coordinator.logs(), 30, "the waiting line")
            assert coordinator.process is not None
            coordinator.process.send_signal(signal.SIGTERM)
            assert coordinator.process.wait(30) == 0
        logs = coordinator.logs()
        assert "coordinator stopped (SIGTERM)" in logs
        assert "Traceback" not in logs


def _post_updates(client: PetClient, bodies: list[bytes], answers: list[str]) -> None:
    for body in bodies:
        try:
            answers.append(client.post(body).result or "no-result")
        except (urllib.error.URLError, ConnectionError, OSError):
            answers.append("connection-error")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_loses_no_accepted_update(tmp_path: Path, sig: signal.Signals) -> None:
    with redis_server(tmp_path, appendfsync="always") as redis:
        port = free_port()
        config = _config(port, redis.url, min_update_count=200)  # Update lasts the whole test
        with coordinator_process(tmp_path, config, port) as coordinator:
            client = PetClient(coordinator.url)
            round_id = int(wait_phase(coordinator, "sum")["round_id"])
            hand = HandRound(client, client.params())
            assert hand.send_sum() == "accepted"
            wait_phase(coordinator, "update", round_id)
            sums = client.sums()
            assert sums is not None
            bodies: list[list[bytes]] = [[], []]
            for index in range(60):
                keys = keys_for(hand.params, Task.UPDATE)
                payload = compose_update(keys, hand.params, sums, MODELS[index % len(MODELS)])
                bodies[index % 2].append(sealed(keys, hand.params, payload))
            answers: list[list[str]] = [[], []]
            senders = [
                threading.Thread(target=_post_updates, args=(client, bodies[i], answers[i])) for i in (0, 1)
            ]
            for sender in senders:
                sender.start()
            wait_until(lambda: sum(a.count("accepted") for a in answers) >= 6, 30, "some accepted updates")
            assert coordinator.process is not None
            coordinator.process.send_signal(sig)
            assert coordinator.process.wait(30) == 0
            for sender in senders:
                sender.join(60)
            outcomes = answers[0] + answers[1]
            assert set(outcomes) <= {"accepted", "unavailable", "connection-error"}, set(outcomes)
            logs = coordinator.logs()
            assert f"coordinator stopped ({sig.name})" in logs
            assert "append-only file" not in logs, "Redis is as durable as `accepted` promises"
            assert "Traceback" not in logs

            coordinator.start()
            wait_until(
                lambda: http_get(coordinator.url + "/readyz")[0] == 200, 30, "the restarted coordinator"
            )
            status = coordinator.status()
            assert (status["round_id"], status["phase"]) == (round_id, "update")
            # every update answered `accepted` is in the store, and nothing else
            assert status["counts"]["update"]["accepted"] == outcomes.count("accepted")
