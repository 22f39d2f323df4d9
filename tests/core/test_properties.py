"""Property tests: serialisation round-trips, and masking is exact for every configuration."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xaynet.core.bincode import (
    RoundParameters,
    decode_seed_dict,
    decode_sum_dict,
    encode_seed_dict,
    encode_sum_dict,
)
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.mask.codec import clamp_scalar, to_local_model
from xaynet.core.mask.config import ALL_CONFIGS, BoundType, DataType, MaskConfig, MaskConfigPair
from xaynet.core.mask.elements import from_ints
from xaynet.core.mask.masking import mask_model
from xaynet.core.mask.model import GlobalModel
from xaynet.core.mask.object import MaskObject
from xaynet.core.mask.prng import derive_mask
from xaynet.core.message.assembler import ChunkAssembler
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.envelope import encode_messages, parse_message
from xaynet.core.message.payloads import Sum2Payload, SumPayload, UpdatePayload, parse_payload

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEYS = SigningKeyPair.from_seed(bytes(range(32)))
COORDINATOR = EncryptKeyPair.from_secret(bytes(range(32, 64)))

configs = st.sampled_from(ALL_CONFIGS)
key32 = st.binary(min_size=32, max_size=32)
sig64 = st.binary(min_size=64, max_size=64)


@st.composite
def mask_objects(draw: st.DrawFn, config: MaskConfig | None = None) -> MaskObject:
    config = config or draw(configs)
    length = draw(st.integers(0, 6))
    element = st.integers(0, config.order - 1)
    vect = from_ints(draw(st.lists(element, min_size=length, max_size=length)), wide=not config.fits_uint64)
    return MaskObject(config, vect, config, draw(element))


payloads = st.one_of(
    st.builds(SumPayload, sig64, key32),
    st.builds(
        UpdatePayload,
        sig64,
        sig64,
        mask_objects(),
        st.dictionaries(key32, st.binary(min_size=80, max_size=80), max_size=4),
    ),
    st.builds(Sum2Payload, sig64, mask_objects()),
)


@SETTINGS
@given(obj=mask_objects())
def test_mask_object_round_trip(obj: MaskObject) -> None:
    raw = obj.to_bytes()
    assert len(raw) == obj.serialized_length()
    assert MaskObject.from_bytes(raw) == obj


@SETTINGS
@given(payload=payloads, max_size=st.one_of(st.none(), st.integers(194, 700)))
def test_message_round_trip_through_chunks(payload: Any, max_size: int | None) -> None:
    assembler = ChunkAssembler(max_message_bytes=1 << 20)
    result = None
    for plain in encode_messages(KEYS, COORDINATOR.public, payload, max_size):
        if max_size is not None:
            assert len(plain) + 48 <= max_size
        message = parse_message(plain, COORDINATOR.public)
        assert message.participant_pk == KEYS.public
        if isinstance(message.payload, ChunkPayload):
            done = assembler.add(
                message.participant_pk, COORDINATOR.public, message.tag, message.payload, 0.0
            )
            result = parse_payload(done.tag, done.payload) if done else None
        else:
            result = message.payload
    assert result == payload


@SETTINGS
@given(
    pk=key32,
    seed=key32,
    probs=st.tuples(st.floats(0, 1), st.floats(0, 1)),
    config=configs,
    length=st.integers(0, 2**64 - 1),
)
def test_round_parameters_round_trip(
    pk: bytes, seed: bytes, probs: tuple[float, float], config: MaskConfig, length: int
) -> None:
    params = RoundParameters(pk, probs[0], probs[1], seed, MaskConfigPair.same(config), length)
    assert RoundParameters.from_bincode(params.to_bincode()) == params


@SETTINGS
@given(
    entries=st.dictionaries(key32, key32, max_size=5),
    seeds=st.dictionaries(key32, st.binary(min_size=80, max_size=80), max_size=5),
)
def test_dictionaries_round_trip(entries: dict[bytes, bytes], seeds: dict[bytes, bytes]) -> None:
    assert decode_sum_dict(encode_sum_dict(entries)) == entries
    assert decode_seed_dict(encode_seed_dict(seeds)) == seeds


@SETTINGS
@given(st.lists(st.fractions(max_denominator=2**70).filter(lambda f: abs(f) < 2**80), max_size=8))
def test_global_model_round_trip(values: list[Fraction]) -> None:
    model = GlobalModel.from_list(values)
    assert GlobalModel.from_bincode(model.to_bincode()).as_fractions() == values


# -- masking is exact ------------------------------------------------------------------


def _quantised(value: Fraction, config: MaskConfig) -> Fraction:
    """Reference: what one model contributes after encoding (MASKING.md §6.3)."""
    a, e = config.add_shift, config.exp_shift
    t = min(max(value, Fraction(-a)), Fraction(a))
    return Fraction(math.floor((t + a) * e), e) - a


def _expected_mean(models: list[list[Fraction]], scalars: list[float], config: MaskConfig) -> list[Fraction]:
    clamped = [clamp_scalar(s, config) for s in scalars]
    total_scalar = sum(_quantised(s, config) for s in clamped)
    return [
        sum(_quantised(s * model[i], config) for s, model in zip(clamped, models, strict=True)) / total_scalar
        for i in range(len(models[0]))
    ]


def _boundary_weights(config: MaskConfig) -> list[Any]:
    """-A, +A, 0 and a small value, representable in the config's data type."""
    a = config.add_shift
    if config.data_type is DataType.F32:
        return [
            -float(np.float32(a)) if a < 2**127 else -float(np.finfo(np.float32).max),
            float(np.float32(min(a, 3.4028234663852886e38))),
            0.0,
            0.375,
        ]
    if config.data_type is DataType.F64:
        return [-float(min(a, 1.7976931348623157e308)), float(min(a, 1.7976931348623157e308)), 0.0, -0.125]
    info = np.iinfo(np.int32 if config.data_type is DataType.I32 else np.int64)
    return [max(-a, int(info.min)), min(a, int(info.max)), 0, 1]


def _run_round(
    config: MaskConfig, models: list[list[Any]], scalars: list[float]
) -> tuple[GlobalModel, list[list[Fraction]]]:
    pair = MaskConfigPair.same(config)
    aggregation = Aggregation(pair, len(models[0]))
    masks = []
    exact: list[list[Fraction]] = []
    for model, scalar in zip(models, scalars, strict=True):
        weights = to_local_model(
            np.array(model, dtype=object) if not config.data_type.is_float else model, config.data_type
        )
        exact.append(
            [Fraction(float(w)) if config.data_type.is_float else Fraction(int(w)) for w in weights.tolist()]
        )
        masked, seed = mask_model(weights, scalar, pair)
        aggregation.add(masked)
        masks.append(derive_mask(seed, pair, len(model)))
    # The sum participants' Sum2 mask: the aggregate of every update's mask.
    mask_sum = Aggregation(pair, len(models[0]))
    for mask in masks:
        mask_sum.add(mask)
    return aggregation.unmask(mask_sum.masked_sum()), exact


@pytest.mark.parametrize("config", ALL_CONFIGS, ids=str)
def test_unmask_of_aggregate_is_the_mean_at_the_bounds(config: MaskConfig) -> None:
    bounds = _boundary_weights(config)
    models = [bounds, bounds[::-1], [bounds[2], bounds[0], bounds[3], bounds[1]]]
    scalars = [1.0, 1.0, 1.0]
    model, exact = _run_round(config, models, scalars)
    assert model.as_fractions() == _expected_mean(exact, scalars, config)
    # And within the data type's precision of the plain mean: each model loses < 1/E.
    precision = Fraction(1, config.exp_shift)
    for got, column in zip(model.as_fractions(), zip(*exact, strict=True), strict=True):
        plain = sum(_quantised(w, config) + 0 for w in column) / len(column)
        clamp = min(max(sum(column) / len(column), Fraction(-config.add_shift)), Fraction(config.add_shift))
        assert got == plain
        if all(abs(w) <= config.add_shift for w in column):
            assert clamp - precision < got <= clamp


@st.composite
def rounds(draw: st.DrawFn) -> tuple[MaskConfig, list[list[Any]], list[float]]:
    config = draw(configs)
    length = draw(st.integers(1, 4))
    count = draw(st.integers(1, 4))
    a = config.add_shift
    if config.data_type.is_float:
        width = 32 if config.data_type is DataType.F32 else 64
        limit = float(min(a, float(np.finfo(np.float32 if width == 32 else np.float64).max)))
        values = st.floats(-limit, limit, width=width, allow_nan=False, allow_infinity=False)
        values = st.one_of(values, st.sampled_from([-limit, limit, 0.0]))
    else:
        info = np.iinfo(np.int32 if config.data_type is DataType.I32 else np.int64)
        values = st.integers(max(-a, int(info.min)), min(a, int(info.max)))
    models = [draw(st.lists(values, min_size=length, max_size=length)) for _ in range(count)]
    scalar_values = (
        st.sampled_from([1.0, 0.5, 0.25, 2.0, 3.0])
        if config.bound_type is not BoundType.B0
        else st.sampled_from([1.0, 0.5, 0.25])
    )
    scalars = [draw(scalar_values) for _ in range(count)]
    return config, models, scalars


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=rounds())
def test_unmask_of_aggregate_is_the_weighted_mean(
    case: tuple[MaskConfig, list[list[Any]], list[float]],
) -> None:
    config, models, scalars = case
    model, exact = _run_round(config, models, scalars)
    assert model.as_fractions() == _expected_mean(exact, scalars, config)
