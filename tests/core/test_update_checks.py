"""What the coordinator checks of an update, after the checks were made cheaper.

The eligibility rule (WIRE.md §2.3) is: *not* a sum participant (a valid sum ticket that wins
the sum lottery), and a valid update ticket that wins the update lottery. The code now draws
the lottery before it verifies a ticket's signature; every combination must still give the
rule's answer. And the masked model an update carries (kept as a view into the message, not
a copy) must be exactly the model's bytes as received.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from xaynet.core.crypto import SigningKeyPair
from xaynet.core.eligibility import SUM_TASK, UPDATE_TASK, is_sum_participant, is_update_participant
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.core.mask.object import MaskObject
from xaynet.core.message.payloads import UpdatePayload

SEED = bytes(range(32))
KEYS = SigningKeyPair.from_seed(bytes(32))
FORGED = os.urandom(64)  # not KEYS' signature of anything


def _ticket(task: bytes, valid: bool) -> bytes:
    return KEYS.sign(SEED + task) if valid else FORGED


@pytest.mark.parametrize(
    ("sum_valid", "sum_wins", "update_valid", "update_wins"),
    list(itertools.product([True, False], repeat=4)),
)
def test_update_eligibility_follows_the_rule_in_every_case(
    sum_valid: bool, sum_wins: bool, update_valid: bool, update_wins: bool
) -> None:
    sum_prob = 1.0 if sum_wins else 0.0  # 1.0: every ticket wins; 0.0: none does
    update_prob = 1.0 if update_wins else 0.0
    sum_ticket, update_ticket = _ticket(SUM_TASK, sum_valid), _ticket(UPDATE_TASK, update_valid)
    summer = sum_valid and sum_wins
    assert is_sum_participant(KEYS.public, sum_ticket, SEED, sum_prob) is summer
    expected = not summer and update_valid and update_wins
    assert (
        is_update_participant(
            KEYS.public,
            sum_signature=sum_ticket,
            update_signature=update_ticket,
            round_seed=SEED,
            sum_prob=sum_prob,
            update_prob=update_prob,
        )
        is expected
    )


def test_the_received_masked_model_is_kept_byte_for_byte() -> None:
    configs = MaskConfigPair.same(DEFAULT_CONFIG)
    order = DEFAULT_CONFIG.order
    vect = np.random.default_rng(1).integers(0, order, 1000, dtype=np.uint64)
    model = MaskObject(configs.vect, vect, configs.unit, 7)
    seeds = {os.urandom(32): os.urandom(80) for _ in range(3)}
    payload = UpdatePayload(bytes(64), bytes(range(64)), model, seeds)
    parsed = UpdatePayload.parse(payload.to_bytes())
    assert bytes(parsed.masked_model_bytes) == model.to_bytes()
    assert parsed.masked_model == model
    assert parsed.local_seed_dict == seeds
    assert parsed.to_bytes() == payload.to_bytes()
