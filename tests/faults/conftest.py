"""Fixtures of the fault suite: one seed per test (printed, and in every failure report).

Rerun a failing case with its seed: `XAYNET_FAULT_SEED=<seed> python3 -m pytest tests/faults -k ...`.
`XAYNET_FAULT_OUTAGE_SECONDS` sets how long Redis is down (CI default 10 s, longer than the
coordinator's 6 s lease TTL; the script `python -m benchmarks faults` uses 30 s).
"""

from __future__ import annotations

import os
import random

import pytest

pytest.importorskip("xaynet_sdk", reason="the reference wheel xaynet-sdk-python==0.1.0 is not installed")


@pytest.fixture
def fault_seed() -> int:
    given = os.environ.get("XAYNET_FAULT_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"fault seed: {seed} (rerun with XAYNET_FAULT_SEED={seed})")
    return seed


@pytest.fixture
def outage_seconds() -> float:
    return float(os.environ.get("XAYNET_FAULT_OUTAGE_SECONDS", "10"))
