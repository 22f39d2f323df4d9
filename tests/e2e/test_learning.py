"""`xaynet test-drive --task digits`: federated learning that learns, checked round by round."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the digits task needs scikit-learn (pip install 'xaynet[examples]')")

from tests.processes import coordinator_process, free_port, pet_config
from xaynet.core.bincode import RoundParameters
from xaynet.core.mask.config import DEFAULT_CONFIG
from xaynet.core.mask.model import GlobalModel
from xaynet.sdk import Participant
from xaynet.testdrive import learning
from xaynet.testdrive.driver import Options, run
from xaynet.testdrive.records import local_model
from xaynet.testdrive.tally import RoundTally
from xaynet.testdrive.workloads import DigitsTask, RandomVectors, refuse_if_clamped


def test_digits_task_reaches_the_central_baseline(tmp_path: Path) -> None:
    """Non-IID shards, scalar n_i/n_max, 8 private rounds: ≥ 90 % of the central accuracy, every
    global model the weighted mean of its round's models, nothing clamped, and a plot."""
    plot = tmp_path / "accuracy.png"
    result = subprocess.run(
        [sys.executable, "-m", "xaynet", "test-drive", "--task", "digits", "-n", "20", "--rounds", "8",
         "--plot", str(plot)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert "split non-IID (Dirichlet" in out
    baseline = float(re.search(r"central baseline .*?: ([\d.]+)% on \d+ test images", out)[1]) / 100
    rounds = re.findall(r"round (\d+) completed: .*; check: (\S+); test accuracy ([\d.]+)%", out)
    assert len(rounds) == 8, out
    assert all(check == "ok" for _, check, _ in rounds), out
    final = float(rounds[-1][2]) / 100
    assert final >= 0.9 * baseline, f"federated {final:.1%} vs central {baseline:.1%}"
    assert "all global models equal the weighted mean (scalar n_i / n_max)" in out
    assert "nothing clamped" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_shards_are_non_iid_and_cover_the_data() -> None:
    data = learning.load_digits()
    rng = np.random.default_rng(0)
    shards = learning.dirichlet_shards(data.train_y, 20, 0.5, rng)
    everything = np.sort(np.concatenate(shards))
    assert np.array_equal(everything, np.arange(len(data.train_y)))  # each image exactly once
    assert min(len(s) for s in shards) >= learning.MIN_SHARD
    iid = learning.dirichlet_shards(data.train_y, 20, 1e4, np.random.default_rng(0))
    assert learning.label_skew(data.train_y, shards) > 0.3 > learning.label_skew(data.train_y, iid)


def _tally_and_task() -> tuple[DigitsTask, RoundTally, np.ndarray, np.ndarray]:
    task = DigitsTask(8)
    task.vect_config = DEFAULT_CONFIG
    tally = RoundTally(bytes(32))
    rng = np.random.default_rng(1)
    models = {i: rng.uniform(-2, 2, learning.MODEL_LENGTH).astype(np.float32) for i in (0, 3, 5)}
    for i, model in models.items():
        tally.add(i, model, float(task.scalars[i]))
    scalars = np.array([task.scalars[i] for i in (0, 3, 5)])
    stacked = np.array([models[i] for i in (0, 3, 5)], dtype=np.float64)
    return task, tally, scalars @ stacked / scalars.sum(), stacked.mean(axis=0)


def _as_global(values: np.ndarray) -> GlobalModel:
    scale = 10**10
    return GlobalModel.from_fractions(np.floor(values * scale).astype(np.int64), scale)


def test_the_check_requires_the_weighted_mean() -> None:
    task, tally, weighted, plain = _tally_and_task()
    assert len(set(task.scalars.tolist())) > 1, "shards of different sizes: scalars differ"
    error, tolerance = task.check(_as_global(weighted), tally)
    assert error <= tolerance < 1e-8
    error, tolerance = task.check(_as_global(plain), tally)
    assert error > 1000 * tolerance


def test_test_drive_refuses_a_model_the_bound_would_clamp() -> None:
    """Values up to 20 in a B0 round: no round runs with a distorted model, the message says B2."""

    class Oversized(RandomVectors):
        def attach(self, index: int, participant: Participant) -> None:
            def provide(params: RoundParameters) -> np.ndarray:
                weights = local_model(index, params.seed, params.model_length) * 20
                refuse_if_clamped(index, weights, participant.scalar, params.mask_config)
                return weights

            participant.model_provider = provide

    options = Options(participants=6, rounds=1, workload=Oversized(), live=False, stall_seconds=60)
    outcome = asyncio.run(run(options))
    assert not outcome.ok
    assert outcome.refused is not None and outcome.completed == []
    assert "refuses participant" in outcome.refused and 'bound_type = "B2"' in outcome.refused


def test_digits_against_a_coordinator_of_another_model_length(tmp_path: Path) -> None:
    port = free_port()
    with coordinator_process(tmp_path, pet_config(4, port=port, times=(1, 1, 0.5)), port) as coordinator:
        result = subprocess.run(
            [sys.executable, "-m", "xaynet", "test-drive", "--task", "digits", "-u", coordinator.url,
             "-n", "6", "--rounds", "1", "--stall-seconds", "60"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[model] length = 650" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--plot", "x.png"], "add --task digits"),
        (["--task", "digits", "-n", "500"], "at most 102 participants (got 500)"),
    ],
)
def test_learning_task_usage_errors(arguments: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xaynet", "test-drive", *arguments],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
