"""Start and stop like a service: a coordinator started before its Redis keeps running
(`/healthz` 200, `/readyz` 503, no traceback), becomes ready when Redis appears and completes
a round; SIGTERM then ends it with exit code 0 and a log line saying so."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from tests.processes import (
    CoordinatorProcess,
    free_port,
    http_get,
    pet_config,
    redis_server,
    run_test_drive,
    wait_until,
)


def test_coordinator_started_before_redis_recovers_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "redis").mkdir()
    with redis_server(tmp_path / "redis") as redis:
        redis.stop()  # its port and data directory stay reserved for the start below
        port = free_port()
        config = tmp_path / "config.toml"
        config.write_text(pet_config(8, port=port, redis_url=redis.url, log_filter="xaynet=info"))
        coordinator = CoordinatorProcess(config, port, tmp_path / "coordinator.log")
        coordinator.start(wait_ready=False)
        try:
            _check_waits_for_redis(coordinator)
            redis.start()
            wait_until(lambda: http_get(coordinator.url + "/readyz", 1)[0] == 200, 60, "/readyz 200")
            drive = run_test_drive(coordinator.url, participants=8, rounds=1)
            assert drive.returncode == 0, drive.stdout[-2000:] + drive.stderr[-2000:]
            offset = coordinator.log_path.stat().st_size
            assert coordinator.process is not None
            coordinator.process.send_signal(signal.SIGTERM)
            code = coordinator.process.wait(30)
        finally:
            coordinator.kill(signal.SIGKILL)
    logs = coordinator.logs()
    assert code == 0, f"SIGTERM must exit 0, got {code}:\n{logs[-3000:]}"
    assert "Traceback" not in logs, logs[-3000:]
    after = logs[offset:] if len(logs) > offset else ""
    assert re.search(r"stop|shut|sigterm|exit", after, re.IGNORECASE), (
        f"no log line says the coordinator stopped after SIGTERM; it logged:\n{after[-2000:]}"
    )


def _says_why(logs: str) -> bool:
    return any(
        re.search(r"warn|error", line, re.IGNORECASE) and re.search(r"redis|store", line, re.IGNORECASE)
        for line in logs.splitlines()
    )


def _check_waits_for_redis(coordinator: CoordinatorProcess) -> None:
    """Without Redis: alive, healthy, not ready, says why, and no traceback."""

    def alive_and_healthy() -> bool:
        assert coordinator.process is not None
        assert coordinator.process.poll() is None, (
            f"the coordinator exited ({coordinator.process.returncode}) because Redis is not up:\n"
            + coordinator.logs()[-3000:]
        )
        return http_get(coordinator.url + "/healthz", 1)[0] == 200

    wait_until(alive_and_healthy, 30, "/healthz 200 while Redis is down")
    code, body = http_get(coordinator.url + "/readyz", 2)
    assert code == 503, (code, body)
    wait_until(lambda: _says_why(coordinator.logs()), 30, "a warning or error line naming Redis/the store")
    assert "Traceback" not in coordinator.logs(), coordinator.logs()[-3000:]
