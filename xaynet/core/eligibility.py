"""Sortition: who takes the sum or update task in a round (WIRE.md §2).

A participant signs `round_seed ‖ "sum"` (or `"update"`); it is eligible when the SHA-256 of
that signature, read as a little-endian integer N, satisfies N / (2^256 - 1) <= threshold.
The comparison is done on exact rationals: a float division can round onto the threshold
and disagree with the original clients at the boundary.
"""

from __future__ import annotations

import math

from xaynet.core.crypto import SigningKeyPair, is_valid_signature, sha256

_DENOMINATOR = 2**256 - 1
SUM_TASK = b"sum"
UPDATE_TASK = b"update"


def is_eligible(signature: bytes, threshold: float) -> bool:
    if math.isnan(threshold):
        raise ValueError("a NaN selection probability is not allowed (the original panics)")
    if threshold < 0.0:
        return False
    if threshold > 1.0:
        return True
    digest_value = int.from_bytes(sha256(signature), "little")
    numerator, denominator = threshold.as_integer_ratio()
    return digest_value * denominator <= numerator * _DENOMINATOR


def task_signature(keys: SigningKeyPair, round_seed: bytes, task: bytes) -> bytes:
    return keys.sign(round_seed + task)


def is_sum_participant(
    participant_pk: bytes, sum_signature: bytes, round_seed: bytes, sum_prob: float
) -> bool:
    """The coordinator's view: a valid sum ticket that wins the sum lottery.

    The lottery (one SHA-256) is checked before the signature (an Ed25519 verification, ~50 µs):
    the answer is the same, and most tickets an update carries lose the sum lottery."""
    return is_eligible(sum_signature, sum_prob) and is_valid_signature(
        participant_pk, round_seed + SUM_TASK, sum_signature
    )


def is_update_participant(
    participant_pk: bytes,
    *,
    sum_signature: bytes,
    update_signature: bytes,
    round_seed: bytes,
    sum_prob: float,
    update_prob: float,
) -> bool:
    """Not a summer, and a valid update ticket that wins the update lottery (WIRE.md §2.3)."""
    if is_sum_participant(participant_pk, sum_signature, round_seed, sum_prob):
        return False
    return is_eligible(update_signature, update_prob) and is_valid_signature(
        participant_pk, round_seed + UPDATE_TASK, update_signature
    )
