"""Mutated and truncated messages: each is parsed correctly or refused with a typed error.

Mutations are applied at three depths, because signatures stop most random changes early:
the sealed body (decryption), the signed plaintext (header and signature), and the payload
re-signed with a known key, so that the payload parsers see the mutated bytes themselves.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.conftest import load_json, read_vector
from xaynet.core.bincode import RoundParameters, decode_seed_dict, decode_sum_dict
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair
from xaynet.core.errors import XaynetError
from xaynet.core.mask.model import GlobalModel
from xaynet.core.mask.object import MaskObject
from xaynet.core.message.envelope import open_message, parse_message, sign_message
from xaynet.core.message.header import Header

META = load_json("wire_vectors.json")
COORDINATOR = EncryptKeyPair.from_secret(bytes.fromhex(META["common"]["coordinator_secret_key"]))
SIGNER = SigningKeyPair.from_seed(bytes.fromhex(META["vectors"][1]["participant_signing_seed"]))
MESSAGES = [m for v in META["vectors"] for m in v["messages"]]
ROUNDS = 400


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0 and buf:  # flip bits
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncate
        del buf[rng.randrange(len(buf) + 1) :]
    elif kind == 2:  # extend
        buf += rng.randbytes(rng.randint(1, 64))
    elif kind == 3 and buf:  # overwrite a run with an extreme value
        start = rng.randrange(len(buf))
        buf[start : start + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
    elif kind == 4 and len(buf) > 8:  # cut a slice out of the middle
        start = rng.randrange(len(buf) - 4)
        del buf[start : start + rng.randint(1, 8)]
    else:  # random bytes of a plausible size
        buf = bytearray(rng.randbytes(rng.randint(0, len(data) + 8)))
    return bytes(buf)


def _outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except XaynetError as error:
        assert error.message, "every error says what is wrong"
        return type(error).__name__
    return "parsed"


@pytest.mark.parametrize("entry", MESSAGES, ids=lambda m: m["file"])
def test_mutated_sealed_and_signed_messages(entry: dict[str, str]) -> None:
    rng = random.Random(entry["file"])
    sealed = read_vector(entry["file"])
    plain = read_vector(entry["plaintext_file"])
    outcomes: set[str] = set()
    for _ in range(ROUNDS):
        outcomes.add(
            _outcome(
                lambda: parse_message(open_message(mutate(sealed, rng), COORDINATOR), COORDINATOR.public)
            )
        )
        outcomes.add(_outcome(lambda: parse_message(mutate(plain, rng), COORDINATOR.public)))
    assert "DecryptError" in outcomes


@pytest.mark.parametrize("entry", MESSAGES, ids=lambda m: m["file"])
def test_mutated_payloads_behind_a_valid_signature(entry: dict[str, str]) -> None:
    """Re-sign each mutated plaintext so the payload parser itself is exercised."""
    rng = random.Random("payload" + entry["file"])
    plain = read_vector(entry["plaintext_file"])
    header = Header.parse(plain)
    outcomes: set[str] = set()
    for _ in range(ROUNDS):
        payload = mutate(plain[136:], rng)
        resigned = sign_message(SIGNER, header.coordinator_pk, header.tag, payload, header.multipart)
        outcomes.add(_outcome(lambda signed=resigned: parse_message(signed, COORDINATOR.public)))
    assert "parsed" in outcomes or header.multipart is False
    assert outcomes - {"parsed"}, "mutations must be refused at least sometimes"


@pytest.mark.parametrize(
    ("source", "parse"),
    [
        ("wire_sum_params.bin", RoundParameters.from_bincode),
        ("api_sums_response_one_entry.bin", decode_sum_dict),
        ("api_seeds_response_one_entry.bin", decode_seed_dict),
        ("api_model_response_5_values.bin", GlobalModel.from_bincode),
    ],
)
def test_mutated_http_bodies(source: str, parse: Callable[[bytes], object]) -> None:
    rng = random.Random(source)
    body = read_vector(source)
    for _ in range(ROUNDS * 2):
        _outcome(lambda: parse(mutate(body, rng)))


def test_mutated_mask_objects() -> None:
    rng = random.Random("mask")
    plain = read_vector("wire_sum2_message.plain.bin")
    obj = plain[136 + 64 :]
    for _ in range(ROUNDS * 3):
        _outcome(lambda: MaskObject.from_bytes(mutate(obj, rng)))
