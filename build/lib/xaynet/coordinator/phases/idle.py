"""Idle: start a new round — new key pair, new seed, empty dictionaries (PHASES.md §4.1)."""

from __future__ import annotations

import struct

from xaynet.coordinator.services import Services
from xaynet.coordinator.store.base import Phase, RoundRecord
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, sha256


def next_seed(keys: EncryptKeyPair, previous_seed: bytes, sum_prob: float, update_prob: float) -> bytes:
    """The original's derivation: SHA-256 of a signature keyed by the new X25519 secret.

    Any 32 unpredictable bytes would do for the clients; keeping the original's makes our
    rounds indistinguishable from its rounds.
    """
    signer = SigningKeyPair.from_seed(keys.secret)
    return sha256(signer.sign(previous_seed + struct.pack("<dd", sum_prob, update_prob)))


async def run(services: Services) -> None:
    """Enter the Sum phase of a new round (after a completed or failed one, or at start)."""
    settings, state = services.settings, services.state
    keys = EncryptKeyPair.generate()
    seed = next_seed(keys, state.record.params.seed, settings.pet.sum, settings.pet.update)
    params = RoundParameters(
        pk=keys.public,
        sum=settings.pet.sum,
        update=settings.pet.update,
        seed=seed,
        mask_config=settings.mask_configs,
        model_length=settings.model.length,
    )
    record = RoundRecord(state.record.round_id + 1, keys, params, Phase.SUM)
    async with state.lock:
        state.sum_dict = None
        state.seed_dict = None
        state.aggregation = None
        state.unfolded = []
        services.pipeline.reset()
        await services.store.clear_round_data()
        await services.enter(record)
        services.metrics.unique_masks.set(0)
