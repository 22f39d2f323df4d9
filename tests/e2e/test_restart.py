"""A coordinator killed with SIGKILL during Update resumes the round from Redis and finishes it
with every update it had accepted (the original abandons the round)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.e2e.test_wheel_rounds import LENGTH, check_global_model, wheel_participants
from tests.processes import coordinator_process, free_port, pet_config, redis_server, wait_until
from xaynet.core.mask.model import GlobalModel

pytest.importorskip("xaynet_sdk")


def test_kill_9_during_update_resumes_the_round(tmp_path: Path) -> None:
    export = tmp_path / "models"
    with redis_server(tmp_path) as redis:
        port = free_port()
        config = pet_config(LENGTH, port=port, redis_url=redis.url, export=export, times=(2, 6, 1))
        with (
            coordinator_process(tmp_path, config, port) as coordinator,
            wheel_participants(coordinator.url, tmp_path),
        ):

            def in_update_with_updates() -> dict[str, object] | None:
                status = coordinator.status()
                return (
                    status
                    if status["phase"] == "update" and status["counts"]["update"]["accepted"] >= 2
                    else None
                )

            before = wait_until(in_update_with_updates, 120, "an Update phase with accepted updates")
            round_id = before["round_id"]
            accepted_before = before["counts"]["update"]["accepted"]
            params_before = coordinator.status()["round_id"]
            coordinator.kill(signal.SIGKILL)
            assert coordinator.process is not None and coordinator.process.returncode == -signal.SIGKILL

            coordinator.start()
            after = coordinator.status()
            assert (after["round_id"], after["phase"]) == (params_before, "update")
            assert after["counts"]["update"]["accepted"] >= accepted_before
            assert "resuming interrupted round" in coordinator.logs()

            target = export / f"global-model-{round_id:08d}.bin"
            wait_until(target.exists, 120, f"the global model of the interrupted round {round_id}")
    included = check_global_model(GlobalModel.from_bincode(target.read_bytes()))
    assert len(included) >= accepted_before
