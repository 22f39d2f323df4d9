"""The coordinator runs on asyncio's own loop, or on uvloop when asked (`XAYNET_EVENT_LOOP=uvloop`)
and installed; a round completes, checked by test-drive, on either."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.processes import coordinator_process, free_port, pet_config, run_test_drive
from xaynet.coordinator import event_loop


def test_the_loop_is_asyncio_unless_uvloop_is_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(event_loop.ENV, raising=False)
    assert event_loop.loop_factory() == ("asyncio", None)
    monkeypatch.setenv(event_loop.ENV, "uvloop")
    name, factory = event_loop.loop_factory()
    installed = importlib.util.find_spec("uvloop") is not None
    assert name == ("uvloop" if installed else "asyncio")
    assert (factory is not None) == installed


@pytest.mark.parametrize("loop", ["default", "uvloop"])
def test_a_round_completes_on_either_loop(tmp_path: Path, loop: str) -> None:
    port = free_port()
    env = {event_loop.ENV: loop} if loop == "uvloop" else {}
    config = pet_config(4, port=port, log_filter="xaynet=debug,info", times=(1, 1, 0.5))
    with coordinator_process(tmp_path, config, port, env=env) as coordinator:
        drive = run_test_drive(coordinator.url, participants=10, rounds=1)
        assert drive.returncode == 0, drive.stdout + drive.stderr + coordinator.logs()[-2000:]
        installed = importlib.util.find_spec("uvloop") is not None
        expected = "uvloop" if loop == "uvloop" and installed else "asyncio"
        assert f"event loop: {expected}" in coordinator.logs()
