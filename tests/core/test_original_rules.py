"""Messages we build pass the original coordinator's checks (WIRE.md §6), read independently.

The checker below re-reads our bytes with PyNaCl and `struct` only, following the spec's
tables, not our parser: sealed box, header, signature range, size formulas, eligibility,
seed dictionary coverage, and that the seeds open to the one that masked the model.
"""

from __future__ import annotations

import hashlib
import struct
from fractions import Fraction

import numpy as np
from nacl.public import PrivateKey, SealedBox
from nacl.signing import VerifyKey

from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, seal
from xaynet.core.eligibility import SUM_TASK, UPDATE_TASK, task_signature
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.mask.codec import to_local_model
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.core.mask.masking import mask_model
from xaynet.core.mask.prng import derive_mask
from xaynet.core.message.envelope import seal_messages
from xaynet.core.message.payloads import Sum2Payload, SumPayload, UpdatePayload

COORDINATOR = EncryptKeyPair.generate()
SEED = hashlib.sha256(b"round").digest()
PAIR = MaskConfigPair.same(DEFAULT_CONFIG)
BPN = 6


def _eligible(signature: bytes, threshold: float) -> bool:
    value = int.from_bytes(hashlib.sha256(signature).digest(), "little")
    return Fraction(value, 2**256 - 1) <= Fraction(threshold)


def _check_envelope(sealed: bytes, tag: int) -> tuple[bytes, bytes]:
    plain = SealedBox(PrivateKey(COORDINATOR.secret)).decrypt(sealed)
    assert len(sealed) == len(plain) + 48
    (length,) = struct.unpack(">I", plain[128:132])
    assert length == len(plain) >= 136
    assert plain[96:128] == COORDINATOR.public
    assert (plain[132], plain[133], plain[134:136]) == (tag, 0, b"\0\0")
    VerifyKey(plain[64:96]).verify(plain[64:length], plain[:64])
    return plain[64:96], plain[136:]


def _mask_object_length(buf: bytes, offset: int) -> int:
    assert buf[offset : offset + 4] == bytes.fromhex("01000003")
    (n,) = struct.unpack(">I", buf[offset + 4 : offset + 8])
    return 12 + n * BPN + BPN


def test_sum_update_sum2_messages_follow_the_rules() -> None:
    summer = SigningKeyPair.from_seed(bytes([1]) * 32)
    updater = SigningKeyPair.from_seed(bytes([2]) * 32)
    ephemeral = EncryptKeyPair.generate()
    sum_prob, update_prob = 0.5, 1.0
    # Find keys that win the lotteries under this seed (the test keys are fixed).
    summer_sig = task_signature(summer, SEED, SUM_TASK)
    updater_sum_sig = task_signature(updater, SEED, SUM_TASK)
    if not _eligible(summer_sig, sum_prob) or _eligible(updater_sum_sig, sum_prob):
        sum_prob = (
            float(Fraction(int.from_bytes(hashlib.sha256(summer_sig).digest(), "little"), 2**256 - 1))
            * 1.000001
        )
    assert _eligible(summer_sig, sum_prob) and not _eligible(updater_sum_sig, sum_prob)

    (sum_body,) = seal_messages(summer, COORDINATOR.public, SumPayload(summer_sig, ephemeral.public))
    pk, payload = _check_envelope(sum_body, 1)
    assert pk == summer.public
    assert len(payload) == 96 and len(sum_body) == 280
    VerifyKey(pk).verify(SEED + b"sum", payload[:64])
    assert payload[64:] == ephemeral.public

    weights = to_local_model([0.5, -0.25, 1.0, 0.1], DEFAULT_CONFIG.data_type)
    masked, mask_seed = mask_model(weights, 1.0, PAIR)
    update_sig = task_signature(updater, SEED, UPDATE_TASK)
    update = UpdatePayload(
        updater_sum_sig, update_sig, masked, {summer.public: seal(ephemeral.public, mask_seed)}
    )
    (update_body,) = seal_messages(updater, COORDINATOR.public, update)
    pk, payload = _check_envelope(update_body, 2)
    VerifyKey(pk).verify(SEED + b"update", payload[64:128])
    assert not _eligible(payload[:64], sum_prob) and _eligible(payload[64:128], update_prob)
    m = _mask_object_length(payload, 128)
    assert m == 42 and len(payload) == 128 + m + 116 and len(update_body) == 470
    (dict_length,) = struct.unpack(">I", payload[128 + m : 132 + m])
    assert dict_length == 116
    assert payload[132 + m : 164 + m] == summer.public
    assert SealedBox(PrivateKey(ephemeral.secret)).decrypt(payload[164 + m :]) == mask_seed

    mask = derive_mask(mask_seed, PAIR, 4)
    (sum2_body,) = seal_messages(summer, COORDINATOR.public, Sum2Payload(summer_sig, mask))
    _, payload = _check_envelope(sum2_body, 3)
    assert len(payload) == 64 + 42 and len(sum2_body) == 290
    aggregation = Aggregation(PAIR, 4)
    aggregation.add(masked)
    model = aggregation.unmask(mask)
    assert np.allclose(model.to_numpy(DEFAULT_CONFIG.data_type), weights, atol=1e-9)
