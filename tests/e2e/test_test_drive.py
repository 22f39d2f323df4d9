"""`xaynet test-drive` as a user runs it, and its check catching a wrong global model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from xaynet.core.mask.model import GlobalModel
from xaynet.testdrive.records import TOLERANCE, RoundRecord, check_model, local_model


def test_test_drive_completes_rounds_and_checks_them() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xaynet", "test-drive", "-n", "12", "--rounds", "2", "-l", "50"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "2 rounds in" in out
    assert "all global models equal the mean" in out
    assert out.count(" ok ") + out.count("│    ok │") >= 2
    assert "round 1: phase sum" in out, "plain progress lines when stdout is not a terminal"


def test_too_few_participants_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xaynet", "test-drive", "-n", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "at least 4 participants" in result.stderr


def _model(values: np.ndarray) -> GlobalModel:
    scale = 10**10
    return GlobalModel.from_fractions(np.round(values * scale).astype(np.int64), scale)


def test_the_check_measures_the_distance_to_the_plain_mean() -> None:
    record = RoundRecord(seed=bytes(range(32)), accepted_updates={0, 1, 2})
    mean = np.mean([local_model(i, record.seed, 20).astype(np.float64) for i in (0, 1, 2)], axis=0)
    assert check_model(_model(mean), record, 20) <= TOLERANCE
    missing_one = np.mean([local_model(i, record.seed, 20).astype(np.float64) for i in (0, 1)], axis=0)
    assert check_model(_model(missing_one), record, 20) > 1e-3


def test_more_participants_than_m3_aggregates_get_a_wider_model_type() -> None:
    """`-n 1001` and up used to stop at once (the embedded settings asked M3 for more than its
    1,000 models); every participant can now count."""
    from xaynet.testdrive.embedded import embedded_settings

    small, large = embedded_settings(1000, 10), embedded_settings(10_000, 10)
    assert small.mask.model_type == "M3" and small.pet.max_update_count == 1000
    assert large.mask.model_type == "M6" and large.pet.max_update_count == 10_000
