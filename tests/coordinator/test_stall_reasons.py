"""A stalled phase says what it waits for; a failed lottery draw restarts the round in under
a minute (the original waited `max_*_time`, an hour in its shipped configs)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from tests.coordinator.rounds import LENGTH, HandRound, wait_phase
from tests.pet_client import PetClient
from tests.processes import coordinator_process, free_port, pet_config, wait_until
from xaynet.coordinator import progress
from xaynet.coordinator.machine import initial_record
from xaynet.coordinator.settings import Settings
from xaynet.coordinator.state import RoundState
from xaynet.coordinator.store.base import Phase


def _settings(**pet: Any) -> Settings:
    return Settings.model_validate({"model": {"length": LENGTH}, "pet": pet})


def _state(settings: Settings, phase: Phase, accepted: int, fetches: int = 0, sums: int = 1) -> RoundState:
    state = RoundState(initial_record(settings))
    state.enter(state.record.with_phase(phase))
    state.counters[phase].accepted = accepted
    state.input_fetches = fetches
    state.sum_dict = {bytes([i]) * 32: bytes(32) for i in range(sums)}
    return state


def test_the_waiting_line_names_counts_time_and_remedy() -> None:
    settings = _settings(min_update_count=4, max_update_time=3600, min_update_time=10)
    state = _state(settings, Phase.UPDATE, accepted=2, fetches=2)
    line = progress.describe(settings, state, now=state.phase_started + 188)
    assert line == (
        "update phase: 2 of 4 required updates, 3,412 s left (2 participants fetched the sum "
        "dictionary); more participants or a lower min_update_count (≥ 3)"
    )
    at_minimum = _settings(min_update_count=3)
    assert "cannot go below 3" in (progress.describe(at_minimum, _state(at_minimum, Phase.UPDATE, 1)) or "")
    assert progress.describe(settings, _state(settings, Phase.UPDATE, accepted=4)) is None
    summing = _settings(min_sum_count=2)
    assert "a higher pet.sum" in (progress.describe(summing, _state(summing, Phase.SUM, 0)) or "")


def test_failed_draw_rule() -> None:
    settings = _settings(min_update_count=3, min_update_time=10, max_update_time=3600)
    quiet = progress.QUIET_SECONDS
    update = _state(settings, Phase.UPDATE, accepted=2, fetches=2)
    start = update.phase_started
    update.last_progress = start + 20
    # quiet counts from the later of min_time and the last message
    assert progress.failed_draw(settings, update, start + 20 + quiet - 1)[0] is None
    why, _ = progress.failed_draw(settings, update, start + 20 + quiet + 1)
    assert why is not None and why.startswith("update phase: 2 of 3 required updates")
    # someone fetched the sum dictionary and has not sent: maybe training, keep waiting
    training = _state(settings, Phase.UPDATE, accepted=2, fetches=3)
    assert progress.failed_draw(settings, training, training.phase_started + 3000)[0] is None
    # enough updates: nothing to restart
    full = _state(settings, Phase.UPDATE, accepted=3, fetches=3)
    assert progress.failed_draw(settings, full, full.phase_started + 3000)[0] is None
    # participants poll /params, but none was drawn for the sum task
    summing = _state(settings, Phase.SUM, accepted=0)
    assert progress.failed_draw(settings, summing, summing.phase_started + 3000)[0] is None, "nobody there"
    summing.params_fetches = 7
    assert progress.failed_draw(settings, summing, summing.phase_started + 5 + quiet - 1)[0] is None
    assert progress.failed_draw(settings, summing, summing.phase_started + 5 + quiet + 1)[0] is not None
    # more masks required than there are sum participants: at once
    masks = _settings(min_sum_count=1, min_sum2_count=2, max_sum2_count=2)
    sum2 = _state(masks, Phase.SUM2, accepted=0, sums=1)
    why, _ = progress.failed_draw(masks, sum2, sum2.phase_started)
    assert why is not None and "only 1 sum participants" in why


def test_update_phase_short_of_updates_restarts_within_a_minute(tmp_path: Path) -> None:
    port = free_port()
    config = pet_config(LENGTH, port=port, sum_prob=0.5, min_update_count=4, times=(0, 0, 0), max_time=3600)
    with coordinator_process(tmp_path, config, port) as coordinator:
        client = PetClient(coordinator.url)
        round_id = int(wait_phase(coordinator, "sum")["round_id"])
        hand = HandRound(client, client.params())
        assert hand.send_sum() == "accepted"
        wait_phase(coordinator, "update", round_id)
        assert hand.send_updates(3) == ["accepted"] * 3
        last_update = time.monotonic()
        status = coordinator.status()
        assert re.fullmatch(
            r"update phase: 3 of 4 required updates, 3,[0-9]{3} s left \(3 participants fetched the sum "
            r"dictionary\); more participants or a lower min_update_count \(≥ 3\)",
            status["waiting_for"],
        ), status["waiting_for"]

        wait_until(lambda: "waiting: update phase: 3 of 4" in coordinator.logs(), 60, "the waiting log line")
        restarted = wait_until(
            lambda: (s := coordinator.status())["round_id"] > round_id and s, 90, "the round to restart"
        )
        assert time.monotonic() - last_update >= progress.QUIET_SECONDS - 1, "restarted too early"
        assert restarted["last_failure"].startswith(
            "failed_draw: update phase: 3 of 4 required updates; every participant that fetched "
            "the sum dictionary (3) has sent its update and nothing arrived for"
        ), restarted["last_failure"]
        assert restarted["rounds_failed"] == 1
        assert "lottery drew too few participants" in coordinator.logs()
