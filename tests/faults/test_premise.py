"""The accounting tells a sum message from the others by its size alone (the proxy cannot
open sealed bodies): a sealed sum message is 280 bytes, and no update or mask message — nor
any chunk of one at our SDK's default maximum size — of the suite's model length is."""

from __future__ import annotations

import numpy as np

from tests.faults.harness import SUM_MESSAGE_SIZE, Layout
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE
from xaynet.core.message.envelope import seal_messages
from xaynet.sdk.tasks import compose_sum, compose_update


def test_only_sum_messages_have_the_sum_size() -> None:
    layout = Layout()
    keys, coordinator = SigningKeyPair.generate(), EncryptKeyPair.generate()
    params = RoundParameters(
        coordinator.public, 0.3, 0.9, bytes(32), MaskConfigPair(DEFAULT_CONFIG, DEFAULT_CONFIG), layout.length
    )
    sum_payload = compose_sum(keys, params, EncryptKeyPair.generate())
    for size in (DEFAULT_MAX_MESSAGE_SIZE, None):
        assert [len(b) for b in seal_messages(keys, coordinator.public, sum_payload, size)] == [
            SUM_MESSAGE_SIZE
        ]
    model = np.zeros(layout.length, dtype=np.float32)
    for sums in range(1, 41):
        sum_dict = {SigningKeyPair.generate().public: EncryptKeyPair.generate().public for _ in range(sums)}
        update = compose_update(keys, params, sum_dict, model)
        update_size = len(update.to_bytes())
        # A mask message's payload is the update's minus its signature, seed dictionary
        # and length field: every size a chunk or message of either can have.
        for payload_size in (update_size, update_size - 64 - 4 - 112 * sums):
            slice_size = DEFAULT_MAX_MESSAGE_SIZE - 192
            remainder = payload_size % slice_size
            sizes = {48 + 136 + payload_size, DEFAULT_MAX_MESSAGE_SIZE, 192 + (remainder or slice_size)}
            assert SUM_MESSAGE_SIZE not in sizes, (sums, payload_size, sizes)
        chunks = seal_messages(keys, coordinator.public, update, DEFAULT_MAX_MESSAGE_SIZE)
        assert len(chunks) >= 4 and SUM_MESSAGE_SIZE not in {len(c) for c in chunks}
