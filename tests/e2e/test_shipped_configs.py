"""The shipped configs keep their comments' promise: the participant count a config names, as
wheel participants, completes rounds against `xaynet coordinator -c configs/<file>` unchanged
(port and Redis from the environment), and its lottery fails a round's draw with a chance of at
most 1e-3."""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

import pytest

from tests.e2e.test_wheel_rounds import wheel_participants
from tests.processes import CoordinatorProcess, free_port, redis_server, wait_until

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
MAX_FAILED_DRAW = 1e-3


def binomial(n: int, k: int, p: float) -> float:
    if p <= 0 or p >= 1:
        return float(k == (n if p >= 1 else 0))
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))


def failed_draw_chance(participants: int, pet: dict[str, float]) -> float:
    """P(fewer than min_sum_count (or min_sum2_count) sum, or fewer than min_update_count
    update participants): each participant sums with `sum`, else updates with `update`."""
    min_sum = int(max(pet["min_sum_count"], pet["min_sum2_count"]))
    min_update = int(pet["min_update_count"])
    drawn = 0.0
    for sums in range(min_sum, participants + 1):
        rest = participants - sums
        enough_updates = sum(binomial(rest, k, pet["update"]) for k in range(min_update, rest + 1))
        drawn += binomial(participants, sums, pet["sum"]) * enough_updates
    return 1.0 - drawn


def named_participants(path: Path) -> int:
    match = re.search(r"^# Sized for (\d+) participants", path.read_text(), re.MULTILINE)
    assert match, f"{path} names no participant count"
    return int(match.group(1))


def test_the_draw_chance_computation() -> None:
    pet = {"min_sum_count": 1, "min_sum2_count": 1, "min_update_count": 3, "sum": 0.5, "update": 1.0}
    # 4 participants who all update unless summing: the draw works only with exactly 1 sum.
    by_hand = 1 - 4 * 0.5**4  # exactly one sum participant of four, the other three update
    assert failed_draw_chance(4, pet) == pytest.approx(by_hand)
    assert failed_draw_chance(3, pet) == pytest.approx(1.0)


@pytest.mark.parametrize("name", ["config.toml", "redis.toml"])
def test_the_named_count_fails_a_draw_at_most_once_in_a_thousand_rounds(name: str) -> None:
    path = CONFIGS / name
    pet = tomllib.loads(path.read_text())["pet"]
    chance = failed_draw_chance(named_participants(path), pet)
    assert chance <= MAX_FAILED_DRAW, f"{name}: {chance:.1e}"
    assert pet["min_update_count"] >= 3 and pet["min_sum_count"] >= 1  # the privacy minimums


@pytest.mark.parametrize(("name", "rounds"), [("config.toml", 2), ("redis.toml", 1)])
def test_the_named_count_of_wheel_participants_completes_rounds(
    name: str, rounds: int, tmp_path: Path
) -> None:
    path = CONFIGS / name
    participants = named_participants(path)
    port = free_port()
    with redis_server(tmp_path) as redis:
        env = {
            "XAYNET_API__BIND_ADDRESS": f"127.0.0.1:{port}",
            "XAYNET_REDIS__URL": redis.url,  # read by redis.toml only (config.toml has no [redis])
            "XAYNET_MODEL_EXPORT__DIRECTORY": str(tmp_path / "models"),
        }
        if name == "config.toml":
            env.pop("XAYNET_REDIS__URL")
        coordinator = CoordinatorProcess(path, port, tmp_path / "coordinator.log", env=env)
        coordinator.start()
        try:
            with wheel_participants(coordinator.url, tmp_path, groups=2, count=participants, total=0, head=4):
                wait_until(
                    lambda: coordinator.status()["rounds_completed"] >= rounds,
                    120 * rounds,
                    f"{rounds} completed rounds",
                )
            status = coordinator.status()
        finally:
            coordinator.kill()
    assert status["store"] == ("redis" if name == "redis.toml" else "memory")
    assert status["rounds_failed"] == 0, status["last_failure"]
    assert "Traceback" not in coordinator.logs()


def test_the_table_in_configs_readme_is_what_the_computation_gives() -> None:
    rows = re.findall(
        r"^\| (\d+) \| (.+) \| (.+) \| (.+) \|$", (CONFIGS / "README.md").read_text(), re.MULTILINE
    )
    assert len(rows) == 4
    for participants, *cells in rows:
        for sum_probability, cell in zip((0.25, 0.35, 0.5), cells, strict=True):
            mantissa, exponent = re.fullmatch(r"\**(\d) × 10⁻([¹²³⁴⁵⁶⁷⁸⁹]+)\**", cell.strip()).groups()  # type: ignore[union-attr]
            shown = int(mantissa) * 10.0 ** -int(exponent.translate(str.maketrans("¹²³⁴⁵⁶⁷⁸⁹", "123456789")))
            pet = {
                "min_sum_count": 1,
                "min_sum2_count": 1,
                "min_update_count": 3,
                "sum": sum_probability,
                "update": 0.9,
            }
            computed = failed_draw_chance(int(participants), pet)
            assert shown == pytest.approx(float(f"{computed:.0e}"), rel=1e-9), (
                participants,
                sum_probability,
                computed,
            )
