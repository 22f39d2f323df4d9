"""The bound advisor agrees exactly with the codec's clamping, and the SDK warns once about it."""

from __future__ import annotations

import asyncio
import logging
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.processes import coordinator_process, free_port, pet_config, wait_until
from xaynet.core.mask.codec import clamp_scalar, encode_weights
from xaynet.core.mask.config import DEFAULT_CONFIG, BoundType, DataType, GroupType, MaskConfig, ModelType
from xaynet.sdk import Participant, PollSchedule
from xaynet.sdk.bounds import advise, bound_value, check_clamping, model_type_for, smallest_bound

FLOAT_TYPES = {DataType.F32: np.float32, DataType.F64: np.float64}
INT_TYPES = {DataType.I32: np.int32, DataType.I64: np.int64}


def _reference_count(values: np.ndarray, scalar: float, config: MaskConfig) -> int:
    """The spec's rule, one weight at a time in exact rationals (MASKING.md §3)."""
    s = clamp_scalar(scalar, config)
    bound = config.add_shift
    return sum(1 for v in values.tolist() if abs(Fraction(v) * s) > bound)


def _config(data_type: DataType, bound_type: BoundType) -> MaskConfig:
    return MaskConfig(GroupType.PRIME, data_type, bound_type, ModelType.M3)


scalars = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, 1e-3, 3.0, 37.0, 0.1, 1e6]),
    st.floats(min_value=0, max_value=200, allow_nan=False),
)
bounds = st.sampled_from([BoundType.B0, BoundType.B2, BoundType.B4])


@settings(max_examples=150, deadline=None)
@given(
    data_type=st.sampled_from(list(FLOAT_TYPES)),
    bound_type=bounds,
    scalar=scalars,
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.5, 1.0, 2.0, 150.0, 20000.0]),
)
def test_float_clamping_count_is_exactly_the_codecs(
    data_type: DataType, bound_type: BoundType, scalar: float, seed: int, scale: float
) -> None:
    config = _config(data_type, bound_type)
    rng = np.random.default_rng(seed)
    values = (rng.uniform(-scale, scale, 40)).astype(FLOAT_TYPES[data_type])
    # Values on and next to the exact threshold A / s', where float rounding would misjudge.
    s = clamp_scalar(scalar, config)
    if s > 0 and Fraction(config.add_shift) / s < Fraction(float(np.finfo(FLOAT_TYPES[data_type]).max)) / 2:
        edge = FLOAT_TYPES[data_type](float(Fraction(config.add_shift) / s))
        values[:3] = [edge, np.nextafter(edge, np.inf), -np.nextafter(edge, -np.inf)]
    found = check_clamping(values, scalar, config)
    counted = 0 if found is None else found.weights_clamped
    assert counted == _reference_count(values, scalar, config)
    if found is None:
        return
    # Agreement with the encoder: a clamped weight encodes to one end of the range.
    encoded = np.asarray(encode_weights(values, scalar, config)).astype(object)
    extremes = (encoded == 0) | (encoded == 2 * config.shift_product)
    flagged = np.array([abs(Fraction(v) * s) > config.add_shift for v in values.tolist()])
    assert extremes[flagged].all()


@settings(max_examples=60, deadline=None)
@given(
    data_type=st.sampled_from(list(INT_TYPES)),
    bound_type=st.sampled_from([BoundType.B0, BoundType.B2, BoundType.B4, BoundType.B6, BoundType.BMAX]),
    values=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20),
    scalar=scalars,
)
def test_integer_clamping_count_is_exactly_the_codecs(
    data_type: DataType, bound_type: BoundType, values: list[int], scalar: float
) -> None:
    config = _config(data_type, bound_type)
    array = np.asarray(values, dtype=INT_TYPES[data_type])
    found = check_clamping(array, scalar, config)
    counted = 0 if found is None else found.weights_clamped
    assert counted == _reference_count(array, scalar, config)


def test_the_issue_case_names_the_bound_that_fits() -> None:
    """B0 and values up to 20: the original silently published [1, 1, 1, 1]."""
    found = check_clamping([20.0, 5.0, -3.0, 0.5], 1.0, DEFAULT_CONFIG)
    assert found is not None
    assert found.weights_clamped == 3
    assert not found.scalar_clamped
    assert 'bound_type = "B2"' in found.message()
    assert "3 of 4 weights" in found.message()


def test_a_raw_sample_count_as_scalar_is_reported() -> None:
    found = check_clamping([0.5, -0.5], 37.0, DEFAULT_CONFIG)
    assert found is not None
    assert found.scalar_clamped and found.effective_scalar == 1
    assert "the scalar 37 is clamped to 1" in found.message()
    assert check_clamping([0.5, -0.5], 0.37, DEFAULT_CONFIG) is None


def test_clamping_is_judged_after_scaling() -> None:
    """MASKING.md §3: with scalar 0.5 in B0, 1.8 is not clamped (0.9), 2.5 is (1.25)."""
    assert check_clamping([1.8, 2.0, -2.0], 0.5, DEFAULT_CONFIG) is None
    found = check_clamping([1.8, 2.5], 0.5, DEFAULT_CONFIG)
    assert found is not None and found.weights_clamped == 1


@pytest.mark.parametrize(
    ("peak", "scalar", "expected"),
    [
        (0.9, 1.0, BoundType.B0),
        (1.0, 1.0, BoundType.B0),
        (1.0000001, 1.0, BoundType.B2),
        (0.9, 2.0, BoundType.B2),  # 1.8 after scaling
        (0.01, 37.0, BoundType.B2),  # the scalar itself needs room
        (150.0, 1.0, BoundType.B4),
        (2e6, 1.0, BoundType.BMAX),
    ],
)
def test_smallest_bound_holds_values_times_the_largest_scalar(
    peak: float, scalar: float, expected: BoundType
) -> None:
    advice = advise(np.array([peak, -peak / 2], dtype=np.float64), scalar)
    assert advice.smallest is expected
    assert advice.fits(expected)
    smaller = [b for b in BoundType if b.byte < expected.byte]
    assert all(not advice.fits(b) for b in smaller)


def test_advice_reads_like_a_recommendation() -> None:
    text = str(advise(np.array([3.2, -0.5], dtype=np.float32), 1.0))
    assert "smallest bound type: B2 (±100)" in text
    assert "B0 would clamp 1 weight" in text
    assert "no bound type" in str(advise(np.array([1e300]), 1e10, DataType.F64))
    assert "Bmax (±3.4e+38 for F32)" in str(advise(np.array([1e30], dtype=np.float32), 1.0))
    assert "scalars ≥ 0" in str(advise(np.array([0.5]), -1.0))


def test_helpers() -> None:
    assert bound_value(BoundType.B4, DataType.F32) == 10_000
    assert smallest_bound(Fraction(101), DataType.F32) is BoundType.B4
    assert smallest_bound(float("nan"), DataType.F32) is None
    assert model_type_for(1000) is ModelType.M3
    assert model_type_for(1001) is ModelType.M6
    with pytest.raises(ValueError, match="10\\^12"):
        model_type_for(10**13)


def test_sdk_warns_once_per_participant_when_the_bound_clamps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Participants sending values up to 20 into a B0 round over rounds until one of them has
    updated twice (the lottery decides how many rounds that takes): the global model is
    clamped (all ones) and each participant said so exactly once, naming B2."""
    port = free_port()
    config = pet_config(4, port=port, sum_prob=0.3, update_prob=1.0, times=(1, 0.5, 0.5), max_time=20)
    big = np.array([20.0, 5.0, -3.0, 1.0], dtype=np.float32)
    updates: dict[int, int] = {}
    with coordinator_process(tmp_path, config, port) as coordinator:

        async def scenario() -> None:
            participants = [
                Participant(
                    coordinator.url,
                    schedule=PollSchedule(minimum=0.05, maximum=0.5),
                    model_provider=lambda _p, i=i: updates.__setitem__(i, updates.get(i, 0) + 1) or big,
                )
                for i in range(8)
            ]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(p.run(stop)) for p in participants]

            def twice() -> bool:  # someone updated in two rounds: "once" is put to the test
                return (
                    coordinator.status()["rounds_completed"] >= 2 and max([0, *list(updates.values())]) >= 2
                )

            await asyncio.to_thread(wait_until, twice, 180, "two rounds with a participant updating in both")
            stop.set()
            await asyncio.gather(*tasks)

        with caplog.at_level(logging.WARNING, logger="xaynet.sdk"):
            asyncio.run(scenario())
        from tests.pet_client import PetClient

        model = PetClient(coordinator.url).model()
    assert model is not None
    assert model.to_numpy(DataType.F32).tolist() == [1.0, 1.0, -1.0, 1.0]
    warnings = [r.getMessage() for r in caplog.records if "distorted" in r.getMessage()]
    assert len(warnings) == len(updates), (warnings, updates)
    assert sum(updates.values()) > len(updates), "someone updated twice: 'once' was put to the test"
    assert all('bound_type = "B2"' in w and "3 of 4 weights" in w for w in warnings)
