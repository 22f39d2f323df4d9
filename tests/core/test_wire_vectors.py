"""The wheel's captured messages: open, verify, parse every field, re-serialise byte for byte."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import load_json, read_vector
from xaynet.core.bincode import (
    RoundParameters,
    decode_seed_dict,
    decode_sum_dict,
    encode_seed_dict,
    encode_sum_dict,
)
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, is_valid_signature
from xaynet.core.eligibility import is_eligible, is_sum_participant, is_update_participant
from xaynet.core.mask.codec import to_local_model
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.core.mask.masking import mask_model
from xaynet.core.mask.prng import derive_mask
from xaynet.core.message.assembler import ChunkAssembler
from xaynet.core.message.chunks import ChunkPayload, split_payload
from xaynet.core.message.envelope import Message, open_message, parse_message, sign_message
from xaynet.core.message.payloads import Sum2Payload, SumPayload, UpdatePayload, parse_payload

META = load_json("wire_vectors.json")
COORDINATOR = EncryptKeyPair.from_secret(bytes.fromhex(META["common"]["coordinator_secret_key"]))
VECTORS = {v["name"]: v for v in META["vectors"]}
PAIR = MaskConfigPair.same(DEFAULT_CONFIG)


def _open(entry: dict[str, Any]) -> tuple[bytes, Message]:
    sealed = read_vector(entry["file"])
    plain = open_message(sealed, COORDINATOR)
    assert plain == read_vector(entry["plaintext_file"])
    assert len(sealed) == entry["wire_length"] == len(plain) + 48
    return plain, parse_message(plain, COORDINATOR.public)


def _params(vector: dict[str, Any]) -> RoundParameters:
    raw = read_vector(vector["params_response"]["file"])
    params = RoundParameters.from_bincode(raw)
    assert params.to_bincode() == raw
    return params


def test_coordinator_key_matches_the_published_one() -> None:
    assert COORDINATOR.public.hex() == META["common"]["coordinator_public_key"]


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_round_parameters_round_trip(name: str) -> None:
    vector = VECTORS[name]
    params = _params(vector)
    served = vector["params_response"]
    assert params.pk.hex() == served["pk"]
    assert params.seed.hex() == served["seed"]
    assert (params.sum, params.update) == (served["sum"], served["update"])
    assert params.model_length == served["model_length"]
    assert params.mask_config == PAIR


@pytest.mark.parametrize("name", ["wire_sum_fresh", "wire_sum"])
def test_sum_message(name: str) -> None:
    vector = VECTORS[name]
    params = _params(vector)
    plain, msg = _open(vector["messages"][0])
    assert isinstance(msg.payload, SumPayload)
    assert msg.participant_pk.hex() == vector["participant_public_key"]
    assert msg.payload.ephm_pk.hex() == vector["ephemeral_public_key"]
    assert is_sum_participant(msg.participant_pk, msg.payload.sum_signature, params.seed, params.sum)
    keys = SigningKeyPair.from_seed(bytes.fromhex(vector["participant_signing_seed"]))
    assert keys.public == msg.participant_pk
    # Ed25519 is deterministic: our signer reproduces the ticket and the whole message.
    assert keys.sign(params.seed + b"sum") == msg.payload.sum_signature
    assert sign_message(keys, COORDINATOR.public, msg.tag, msg.payload.to_bytes()) == plain


def test_sum2_message_mask_is_the_served_seed_mask() -> None:
    vector = VECTORS["wire_sum2"]
    params = _params(vector)
    plain, msg = _open(vector["messages"][0])
    assert isinstance(msg.payload, Sum2Payload)
    assert msg.payload.model_mask.to_bytes().hex() == vector["expected_model_mask_hex"]
    mask = derive_mask(bytes.fromhex(vector["served_mask_seed"]), PAIR, params.model_length)
    assert mask == msg.payload.model_mask
    keys = SigningKeyPair.from_seed(bytes.fromhex(vector["participant_signing_seed"]))
    assert sign_message(keys, COORDINATOR.public, msg.tag, msg.payload.to_bytes()) == plain
    seeds = decode_seed_dict(read_vector(vector["seeds_response_file"]))
    assert encode_seed_dict(seeds) == read_vector(vector["seeds_response_file"])


@pytest.mark.parametrize("name", ["wire_update", "wire_update3"])
def test_update_message(name: str) -> None:
    vector = VECTORS[name]
    params = _params(vector)
    plain, msg = _open(vector["messages"][0])
    payload = msg.payload
    assert isinstance(payload, UpdatePayload)
    assert is_update_participant(
        msg.participant_pk,
        sum_signature=payload.sum_signature,
        update_signature=payload.update_signature,
        round_seed=params.seed,
        sum_prob=params.sum,
        update_prob=params.update,
    )
    served = {bytes.fromhex(s["sum_participant_public_key"]): s for s in vector["sum_dict"]}
    sums_raw = read_vector(vector["sums_response_file"])
    assert set(decode_sum_dict(sums_raw)) == set(served)
    assert encode_sum_dict(decode_sum_dict(sums_raw)) == sums_raw
    assert set(payload.local_seed_dict) == set(served)
    seeds = {
        EncryptKeyPair.from_secret(bytes.fromhex(served[pk]["ephemeral_secret_key"])).open(sealed)
        for pk, sealed in payload.local_seed_dict.items()
    }
    assert len(seeds) == 1
    (seed,) = seeds
    # Recompute the masked model from the seed and the local model: same bytes.
    weights = to_local_model(vector["local_model_f32"], DEFAULT_CONFIG.data_type, params.model_length)
    recomputed, _ = mask_model(weights, vector["scalar"], PAIR, seed)
    assert recomputed == payload.masked_model
    assert payload.to_bytes() == plain[136:]
    keys = SigningKeyPair.from_seed(bytes.fromhex(vector["participant_signing_seed"]))
    assert sign_message(keys, COORDINATOR.public, msg.tag, payload.to_bytes()) == plain


@pytest.mark.parametrize(
    "name", ["wire_sum_multipart", "wire_update_multipart", "wire_update_multipart_default"]
)
def test_multipart_messages_reassemble(name: str) -> None:
    vector = VECTORS[name]
    params = _params(vector)
    assembler = ChunkAssembler(max_message_bytes=1 << 20)
    keys = SigningKeyPair.from_seed(bytes.fromhex(vector["participant_signing_seed"]))
    assembled = None
    chunks: list[ChunkPayload] = []
    for entry in vector["messages"]:
        plain, msg = _open(entry)
        assert msg.header.multipart
        assert isinstance(msg.payload, ChunkPayload)
        chunks.append(msg.payload)
        assert (
            sign_message(keys, COORDINATOR.public, msg.tag, msg.payload.to_bytes(), multipart=True) == plain
        )
        assert len(read_vector(entry["file"])) <= vector["max_message_size"]
        assembled = assembler.add(
            msg.participant_pk, msg.header.coordinator_pk, msg.tag, msg.payload, now=0.0
        )
    assert assembled is not None
    assert len(assembler) == 0
    payload = parse_payload(assembled.tag, assembled.payload)
    assert payload.sum_signature == keys.sign(params.seed + b"sum")
    # Our splitter cuts the same payload into the same chunks (same message id given).
    again = split_payload(assembled.payload, vector["max_message_size"], chunks[0].message_id)
    assert again == chunks


def test_fresh_participant_saved_state_holds_its_key() -> None:
    vector = VECTORS["wire_sum_fresh"]
    state = read_vector(vector["saved_state_file"])
    secret = bytes.fromhex(vector["participant_signing_seed"]) + bytes.fromhex(
        vector["participant_public_key"]
    )
    assert secret in state
    assert SigningKeyPair.from_libsodium_secret(secret).public.hex() == vector["participant_public_key"]


@pytest.mark.parametrize("case", META["eligibility"], ids=lambda c: c["source"][:40])
def test_eligibility_matches_the_wheel_to_one_ulp(case: dict[str, Any]) -> None:
    assert is_eligible(bytes.fromhex(case["signature"]), case["threshold"]) is case["eligible"]


def test_eligibility_extremes() -> None:
    signature = bytes(range(64))
    assert is_eligible(signature, 1.0)
    assert is_eligible(signature, 1.5)
    assert not is_eligible(signature, -0.1)
    assert not is_eligible(signature, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        is_eligible(signature, float("nan"))


def test_garbage_update_ticket_sum_signature_still_lets_update_through() -> None:
    """WIRE.md §2.3: a junk sum signature just means "not a summer"."""
    vector = VECTORS["wire_update"]
    params = _params(vector)
    _, msg = _open(vector["messages"][0])
    payload = msg.payload
    assert isinstance(payload, UpdatePayload)
    assert not is_valid_signature(msg.participant_pk, params.seed + b"sum", bytes(64))
    assert is_update_participant(
        msg.participant_pk,
        sum_signature=bytes(64),
        update_signature=payload.update_signature,
        round_seed=params.seed,
        sum_prob=params.sum,
        update_prob=params.update,
    )
