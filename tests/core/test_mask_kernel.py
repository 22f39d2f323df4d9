"""The compiled rejection-sampling kernel and the numpy fallback derive the same masks.

Both paths must give the bytes of the original (recorded vectors), consume exactly the same
keystream (so a following draw, e.g. the vector after the unit, starts at the same place),
and the numpy path must take over by itself when numba is not installed. `sum_masks` (Sum2,
masks added where they are drawn) must equal adding the derived masks one by one.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import load_json
from xaynet.core.errors import TooManyModelsError
from xaynet.core.mask import kernel
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.mask.config import ALL_CONFIGS, DEFAULT_CONFIG, MaskConfig, MaskConfigPair
from xaynet.core.mask.masksum import sum_masks
from xaynet.core.mask.prng import Keystream, derive_mask, draw_elements

ROOT = Path(__file__).resolve().parents[2]
SUM2 = load_json("mask_sum2_wheel.json")
WORKED = load_json("mask_worked_example.json")
UINT64_CONFIGS = [c for c in ALL_CONFIGS if c.fits_uint64]
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
seeds = st.binary(min_size=32, max_size=32)


def _both(seed: bytes, pair: MaskConfigPair, length: int) -> tuple[bytes, bytes]:
    return (
        derive_mask(seed, pair, length, compiled=True).to_bytes(),
        derive_mask(seed, pair, length, compiled=False).to_bytes(),
    )


def test_the_compiled_kernel_is_in_use() -> None:
    """numba is in the `test` extra: without it every comparison below would be numpy vs numpy."""
    assert kernel.load() is not None


@pytest.mark.parametrize("config", UINT64_CONFIGS, ids=str)
def test_every_uint64_config_derives_the_same_bytes_on_both_paths(config: MaskConfig) -> None:
    # 5000 elements span several kernel chunks for the configs that accept 1 attempt in 90.
    pair = MaskConfigPair.same(config)
    for index, length in enumerate((0, 1, 7, 5000)):
        compiled, numpy = _both(bytes([index]) * 32, pair, length)
        assert compiled == numpy


@pytest.mark.parametrize("entry", SUM2, ids=lambda e: "/".join(e["config"]))
def test_both_paths_reproduce_the_wheels_sum2_masks(entry: dict[str, Any]) -> None:
    pair = MaskConfigPair.same(MaskConfig.from_names(*entry["config"]))
    length = int(entry["length"])
    for compiled in (True, False):
        aggregation = Aggregation(pair, length)
        for seed in entry["seeds"]:
            aggregation.add(derive_mask(bytes.fromhex(seed), pair, length, compiled=compiled))
        assert aggregation.masked_sum().to_bytes().hex() == entry["aggregated_mask_object_hex"]


def test_both_paths_reproduce_the_worked_example() -> None:
    pair = MaskConfigPair.same(MaskConfig.from_names(*WORKED["config"]))
    for compiled in (True, False):
        mask = derive_mask(bytes.fromhex(WORKED["seed"]), pair, len(WORKED["weights"]), compiled=compiled)
        assert mask.to_bytes().hex() == WORKED["mask_object_hex"]


@SETTINGS
@given(
    seed=seeds,
    vect=st.sampled_from(UINT64_CONFIGS),
    unit=st.sampled_from(ALL_CONFIGS),
    length=st.integers(0, 3000),
)
def test_any_seed_and_config_pair_derives_the_same_mask(
    seed: bytes, vect: MaskConfig, unit: MaskConfig, length: int
) -> None:
    # A wide unit config is drawn by numpy on both paths; the vector then starts from the
    # keystream the unit draw gave back, which exercises the hand-over between the paths.
    compiled, numpy = _both(seed, MaskConfigPair(vect, unit), length)
    assert compiled == numpy


@SETTINGS
@given(seed=seeds, config=st.sampled_from(UINT64_CONFIGS), counts=st.lists(st.integers(0, 2000), max_size=4))
def test_both_paths_consume_exactly_the_same_keystream(
    seed: bytes, config: MaskConfig, counts: list[int]
) -> None:
    fast, slow = Keystream(seed), Keystream(seed)
    for count in counts:
        drawn_fast = draw_elements(fast, config, count, compiled=True)
        drawn_slow = draw_elements(slow, config, count, compiled=False)
        assert drawn_fast.tolist() == drawn_slow.tolist()
        assert fast.consumed == slow.consumed
    assert fast.read(64) == slow.read(64)


@SETTINGS
@given(seed=seeds, steps=st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 5000)), max_size=8))
def test_reads_and_unreads_follow_the_keystream(seed: bytes, steps: list[tuple[int, int]]) -> None:
    """`read_chunk` refills its reused buffer from the bytes given back, then fresh keystream."""
    reference = Keystream(seed).read(sum(read for read, _ in steps) + 64)
    stream = Keystream(seed)
    for read, give_back in steps:
        start = stream.consumed
        chunk = stream.read_chunk(read)
        assert bytes(chunk) == reference[start : start + read]
        back = min(give_back, read)
        stream.unread(chunk[read - back :])
        assert stream.consumed == start + read - back
    position = stream.consumed
    assert stream.read(64) == reference[position : position + 64]


def test_without_numba_the_numpy_path_is_chosen_and_exact() -> None:
    """A process where `import numba` fails derives the worked example all the same."""
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numba"] = None  # makes `import numba` raise ImportError
        from tests.conftest import load_json
        from xaynet.core.mask import kernel
        from xaynet.core.mask.config import MaskConfig, MaskConfigPair
        from xaynet.core.mask.prng import derive_mask
        worked = load_json("mask_worked_example.json")
        pair = MaskConfigPair.same(MaskConfig.from_names(*worked["config"]))
        mask = derive_mask(bytes.fromhex(worked["seed"]), pair, len(worked["weights"]))
        assert kernel.load() is None, "the kernel loaded without numba"
        assert mask.to_bytes().hex() == worked["mask_object_hex"], "numpy path differs"
        print("numpy path ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "numpy path ok"


def test_a_default_config_mask_of_100k_is_identical_on_both_paths() -> None:
    compiled, numpy = _both(bytes(range(32)), MaskConfigPair.same(DEFAULT_CONFIG), 100_000)
    assert compiled == numpy


def _summed_one_by_one(seeds: list[bytes], pair: MaskConfigPair, length: int) -> bytes:
    aggregation = Aggregation(pair, length)
    for seed in seeds:
        aggregation.add(derive_mask(seed, pair, length, compiled=False))
    return aggregation.masked_sum().to_bytes()


@pytest.mark.parametrize("entry", SUM2, ids=lambda e: "/".join(e["config"]))
def test_sum_masks_reproduces_the_wheels_sum2_messages(entry: dict[str, Any]) -> None:
    pair = MaskConfigPair.same(MaskConfig.from_names(*entry["config"]))
    seeds = [bytes.fromhex(seed) for seed in entry["seeds"]]
    for compiled in (True, False):
        total = sum_masks(seeds, pair, int(entry["length"]), compiled=compiled)
        assert total.to_bytes().hex() == entry["aggregated_mask_object_hex"]


@pytest.mark.parametrize("config", UINT64_CONFIGS, ids=str)
def test_sum_masks_equals_adding_the_masks_one_by_one(config: MaskConfig) -> None:
    # 12 seeds: more than the 9 additions uint64 holds for B2/M6 orders (reduced in between);
    # Power2 orders rely on uint64 wrap-around instead.
    pair = MaskConfigPair.same(config)
    seeds = [bytes([i]) * 32 for i in range(12)]
    assert sum_masks(seeds, pair, 700).to_bytes() == _summed_one_by_one(seeds, pair, 700)


def test_sum_masks_of_no_seeds_is_the_zero_mask() -> None:
    pair = MaskConfigPair.same(DEFAULT_CONFIG)
    assert sum_masks([], pair, 5).to_bytes() == _summed_one_by_one([], pair, 5)


@pytest.mark.parametrize("compiled", [True, False])
def test_sum_masks_refuses_more_masks_than_the_model_type_allows(compiled: bool) -> None:
    pair = MaskConfigPair.same(DEFAULT_CONFIG)  # M3: at most 1000 models
    seeds = [i.to_bytes(32, "little") for i in range(1001)]
    assert sum_masks(seeds[:1000], pair, 0, compiled=compiled).unit < DEFAULT_CONFIG.order
    with pytest.raises(TooManyModelsError):
        sum_masks(seeds, pair, 0, compiled=compiled)


@SETTINGS
@given(
    seeds=st.lists(seeds, max_size=5),
    vect=st.sampled_from(UINT64_CONFIGS),
    unit=st.sampled_from(ALL_CONFIGS),
    length=st.integers(0, 1500),
)
def test_sum_masks_with_any_config_pair(
    seeds: list[bytes], vect: MaskConfig, unit: MaskConfig, length: int
) -> None:
    pair = MaskConfigPair(vect, unit)
    assert sum_masks(seeds, pair, length).to_bytes() == _summed_one_by_one(seeds, pair, length)
