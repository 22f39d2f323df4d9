"""Masking against the wheel's recorded masks, masked models and global models."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

from tests.conftest import load_json
from xaynet.core.errors import EncodingError, ZeroScalarSumError
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.mask.codec import encode_scalar, encode_weights, to_local_model
from xaynet.core.mask.config import ALL_CONFIGS, DataType, MaskConfig, MaskConfigPair
from xaynet.core.mask.masking import mask_model
from xaynet.core.mask.model import GlobalModel
from xaynet.core.mask.object import MaskObject
from xaynet.core.mask.prng import Keystream, derive_mask

ORDERS = load_json("mask_orders.json")
SUM2 = load_json("mask_sum2_wheel.json")
UPDATES = load_json("mask_update_wheel.json")
GLOBAL = load_json("mask_global_model_wheel.json")
WORKED = load_json("mask_worked_example.json")


def _config(names: list[str]) -> MaskConfig:
    return MaskConfig.from_names(*names)


def _weights(entry: dict[str, Any], config: MaskConfig) -> np.ndarray:
    given = entry["weights_given_to_sdk"]
    if config.data_type.is_float:
        return to_local_model([float(w) for w in given], config.data_type)
    return to_local_model(np.array([int(w) for w in given], dtype=object), config.data_type)


@pytest.mark.parametrize("row", ORDERS, ids=lambda r: r["config_bytes_hex"])
def test_every_config_has_the_original_constants(row: dict[str, Any]) -> None:
    config = MaskConfig.from_bytes(bytes.fromhex(row["config_bytes_hex"]))
    assert str(config.order) == row["order"]
    assert config.bytes_per_number == int(row["bytes_per_number"])
    assert config.draw_bytes == int(row["draw_bytes"])
    assert config.add_shift == int(row["add_shift"])
    assert config.exp_shift == 10 ** int(row["exp_shift_pow10"])
    assert config.max_models == int(row["max_models"])
    assert MaskConfig.from_bincode(config.to_bincode()) == config


def test_all_240_configs_are_distinct() -> None:
    assert len({c.to_bytes() for c in ALL_CONFIGS}) == 240


def test_keystream_is_rfc8439_for_the_zero_seed() -> None:
    assert Keystream(bytes(32)).read(64).hex() == WORKED["keystream_first_64_bytes"]


def test_worked_example_step_by_step() -> None:
    config = _config(WORKED["config"])
    pair = MaskConfigPair.same(config)
    mask = derive_mask(bytes.fromhex(WORKED["seed"]), pair, len(WORKED["weights"]))
    assert mask.unit == int(WORKED["mask_unit"])
    assert [int(x) for x in mask.vect] == [int(x) for x in WORKED["mask_vect"]]
    assert mask.to_bytes().hex() == WORKED["mask_object_hex"]
    weights = to_local_model([float(Fraction(w)) for w in WORKED["weights_exact"]], DataType.F32)
    assert [int(x) for x in encode_weights(weights, 1.0, config)] == [int(x) for x in WORKED["encoded_vect"]]
    assert encode_scalar(1.0, config) == int(WORKED["encoded_unit"])
    masked, _ = mask_model(weights, 1.0, pair, bytes.fromhex(WORKED["seed"]))
    assert masked.to_bytes().hex() == WORKED["masked_object_hex"]
    aggregation = Aggregation(pair, len(weights))
    aggregation.add(masked)
    model = aggregation.unmask(mask)
    assert model.as_fractions() == [Fraction(x) for x in WORKED["global_model_one_participant"]]
    assert model.to_bincode().hex() == WORKED["global_model_bincode_hex"]


@pytest.mark.parametrize("entry", SUM2, ids=lambda e: "/".join(e["config"]))
def test_sum2_aggregated_masks_match_the_wheel(entry: dict[str, Any]) -> None:
    config = _config(entry["config"])
    pair = MaskConfigPair.same(config)
    expected = MaskObject.from_bytes(bytes.fromhex(entry["aggregated_mask_object_hex"]))
    aggregation = Aggregation(pair, int(entry["length"]))
    for seed in entry["seeds"]:
        aggregation.add(derive_mask(bytes.fromhex(seed), pair, int(entry["length"])))
    total = aggregation.masked_sum()
    assert total == expected
    assert total.to_bytes().hex() == entry["aggregated_mask_object_hex"]


@pytest.mark.parametrize("entry", UPDATES, ids=lambda e: "/".join(e["config"]) + f" s={e['scalar']}")
def test_masked_models_match_the_wheel_and_unmask(entry: dict[str, Any]) -> None:
    config = _config(entry["config"])
    pair = MaskConfigPair.same(config)
    weights = _weights(entry, config)
    exact = [Fraction(w) for w in entry["weights_exact"]]
    assert [Fraction(w) if config.data_type.is_float else Fraction(int(w)) for w in weights.tolist()] == exact
    seed = bytes.fromhex(entry["seed"])
    masked, _ = mask_model(weights, float(entry["scalar"]), pair, seed)
    assert masked.to_bytes().hex() == entry["masked_object_hex"]
    aggregation = Aggregation(pair, len(weights))
    aggregation.add(masked)
    mask = derive_mask(seed, pair, len(weights))
    expected = entry["unmasked_if_this_were_the_only_model"]
    if expected is None:
        with pytest.raises(ZeroScalarSumError):
            aggregation.unmask(mask)
    else:
        assert aggregation.unmask(mask).as_fractions() == [Fraction(x) for x in expected]


@pytest.mark.parametrize("entry", GLOBAL, ids=lambda e: "/".join(e["config"]) + str(len(e["rationals"])))
def test_global_models_encode_and_convert_like_the_wheel(entry: dict[str, Any]) -> None:
    config = _config(entry["config"])
    rationals = [Fraction(r) for r in entry["rationals"]]
    model = GlobalModel.from_list(rationals)
    assert model.to_bincode().hex() == entry["bincode_hex"]
    assert GlobalModel.from_bincode(bytes.fromhex(entry["bincode_hex"])) == model
    expected = entry["wheel_global_model"]
    if isinstance(expected, str):
        assert expected == "error:GlobalModelDataTypeMisMatch"
        with pytest.raises(EncodingError):
            model.to_numpy(config.data_type)
        return
    converted = model.to_numpy(config.data_type)
    if config.data_type.is_float:
        assert [float(x) for x in converted] == [float(x) for x in expected]
    else:
        assert [int(x) for x in converted] == [int(x) for x in expected]


def test_int64_and_bignum_model_encodings_agree() -> None:
    values = [Fraction(1, 3), Fraction(-5, 4), Fraction(0), Fraction(2**40 + 7, 2**33), Fraction(-(2**62), 3)]
    bignum = GlobalModel.from_list(values)
    nums = np.array([v.numerator for v in values], dtype=np.int64)
    dens = np.array([v.denominator for v in values], dtype=np.int64)
    fast = GlobalModel.from_fractions(nums, dens)
    assert fast.numerators.dtype == np.int64
    assert fast.to_bincode() == bignum.to_bincode()
