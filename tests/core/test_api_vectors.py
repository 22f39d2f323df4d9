"""The HTTP bodies the wheel accepted and the messages it posted in the API captures."""

from __future__ import annotations

import hashlib
from fractions import Fraction

import pytest

from tests.conftest import load_json, read_vector
from xaynet.core.bincode import (
    RoundParameters,
    decode_seed_dict,
    decode_sum_dict,
    encode_seed_dict,
    encode_sum_dict,
)
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.mask.config import BoundType, DataType, ModelType
from xaynet.core.mask.model import GlobalModel
from xaynet.core.message.envelope import open_message, parse_message
from xaynet.core.message.payloads import Sum2Payload, SumPayload, UpdatePayload

INDEX = load_json("api_vectors.json")
KEYS = INDEX["_keys"]
COORDINATOR = EncryptKeyPair.from_secret(bytes.fromhex(KEYS["coordinator_x25519_secret_key_hex"]))
FILES = sorted(k for k in INDEX if not k.startswith("_"))


@pytest.mark.parametrize("name", FILES)
def test_file_is_what_the_index_says(name: str) -> None:
    data = read_vector(name)
    assert len(data) == INDEX[name]["len"]
    assert hashlib.sha256(data).hexdigest() == INDEX[name]["sha256"]


@pytest.mark.parametrize("name", [f for f in FILES if f.startswith("api_params_")])
def test_params_bodies_round_trip(name: str) -> None:
    raw = read_vector(name)
    params = RoundParameters.from_bincode(raw)
    assert params.to_bincode() == raw
    assert params.pk.hex() == KEYS["coordinator_x25519_public_key_hex"]
    assert params.model_length == (5 if "len5" in name else 4)
    vect = params.mask_config.vect
    assert vect.bound_type is (BoundType.BMAX if "bmax" in name else BoundType.B0)
    assert vect.model_type is (ModelType.M12 if "m12" in name else ModelType.M3)
    assert vect.data_type is (DataType.I32 if "i32" in name else DataType.F32)


def test_params_ignore_trailing_bytes_like_the_wheel() -> None:
    raw = read_vector("api_params_sum0_upd0_prime_f32_b0_m3_len4.bin")
    assert RoundParameters.from_bincode(raw + b"junkjunk") == RoundParameters.from_bincode(raw)


def test_dictionary_bodies_round_trip() -> None:
    sums = read_vector("api_sums_response_one_entry.bin")
    assert encode_sum_dict(decode_sum_dict(sums)) == sums
    seeds = read_vector("api_seeds_response_one_entry.bin")
    decoded = decode_seed_dict(seeds)
    assert list(decoded) == [bytes([0x55]) * 32]
    assert encode_seed_dict(decoded) == seeds


def test_model_body_five_values() -> None:
    model = GlobalModel.from_bincode(read_vector("api_model_response_5_values.bin"))
    assert model.as_fractions() == [Fraction(1, 2), Fraction(-5, 4), Fraction(3), Fraction(0), Fraction(1, 3)]
    assert model.to_bincode() == read_vector("api_model_response_5_values.bin")
    assert model.to_numpy(DataType.F32).tolist() == [0.5, -1.25, 3.0, 0.0, 0.3333333432674408]
    assert model.to_numpy(DataType.I32).tolist() == [0, -1, 3, 0, 0]


@pytest.mark.parametrize(
    ("kind", "payload_type", "config_bytes"),
    [
        ("sum", SumPayload, None),
        ("sum2", Sum2Payload, "01000003"),
        ("update_b0_m3", UpdatePayload, "01000003"),
        ("update_bmax_m12", UpdatePayload, "0100ff0c"),
    ],
)
def test_posted_messages_open_and_parse(kind: str, payload_type: type, config_bytes: str | None) -> None:
    plain = open_message(read_vector(f"api_message_{kind}_encrypted.bin"), COORDINATOR)
    assert plain == read_vector(f"api_message_{kind}_plain.bin")
    message = parse_message(plain, COORDINATOR.public)
    assert isinstance(message.payload, payload_type)
    assert message.payload.to_bytes() == plain[136:]
    if isinstance(message.payload, UpdatePayload):
        assert message.payload.masked_model.vect_config.to_bytes().hex() == config_bytes
    if isinstance(message.payload, Sum2Payload):
        assert message.payload.model_mask.vect_config.to_bytes().hex() == config_bytes
