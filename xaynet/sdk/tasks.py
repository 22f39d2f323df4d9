"""The participant's protocol work, without I/O: who am I this round, and what do I send.

Each function takes what the participant fetched (round parameters, sum dictionary, seed
dictionary) and returns the payload to send; sealing, chunking and HTTP are the caller's.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from typing import Any

import numpy.typing as npt

from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, seal
from xaynet.core.eligibility import SUM_TASK, UPDATE_TASK, is_eligible, task_signature
from xaynet.core.errors import DecryptError, MaskError
from xaynet.core.mask.codec import to_local_model
from xaynet.core.mask.masking import mask_model
from xaynet.core.mask.masksum import sum_masks
from xaynet.core.message.payloads import Sum2Payload, SumPayload, UpdatePayload


class PhaseEndedError(Exception):
    """The phase this work was for has ended: its result would only be discarded, so the work
    stopped early (a Sum2 derivation of thousands of masks can outlive its phase by minutes)."""


class Task(enum.IntEnum):
    """The wheel's numbering (`Participant.task()`): 0 none, 1 sum, 2 update."""

    NONE = 0
    SUM = 1
    UPDATE = 2


def select_task(keys: SigningKeyPair, params: RoundParameters) -> Task:
    """Sum first; update only if not a summer (WIRE.md §2.3)."""
    if is_eligible(task_signature(keys, params.seed, SUM_TASK), params.sum):
        return Task.SUM
    if is_eligible(task_signature(keys, params.seed, UPDATE_TASK), params.update):
        return Task.UPDATE
    return Task.NONE


def compose_sum(keys: SigningKeyPair, params: RoundParameters, ephemeral: EncryptKeyPair) -> SumPayload:
    return SumPayload(task_signature(keys, params.seed, SUM_TASK), ephemeral.public)


def compose_update(
    keys: SigningKeyPair,
    params: RoundParameters,
    sum_dict: dict[bytes, bytes],
    weights: Any,
    *,
    scalar: float = 1.0,
    seed: bytes | None = None,
) -> UpdatePayload:
    """Mask the local model with a fresh seed and seal that seed to every sum participant."""
    local = to_local_model(weights, params.mask_config.vect.data_type, params.model_length)
    masked, mask_seed = mask_model(local, scalar, params.mask_config, seed)
    seeds = {sum_pk: seal(ephm_pk, mask_seed) for sum_pk, ephm_pk in sum_dict.items()}
    return UpdatePayload(
        task_signature(keys, params.seed, SUM_TASK),
        task_signature(keys, params.seed, UPDATE_TASK),
        masked,
        seeds,
    )


def compose_sum2(
    keys: SigningKeyPair,
    params: RoundParameters,
    ephemeral: EncryptKeyPair,
    seed_dict: dict[bytes, bytes],
    *,
    stop: threading.Event | None = None,
) -> Sum2Payload:
    """Open every mask seed addressed to us, derive and add the masks (the heaviest role).

    Raises `DecryptError` if a seed does not open (the wheel then gives up on the round),
    `MaskError` if the masks cannot be aggregated, and `PhaseEndedError` as soon as `stop` is set
    (checked before each mask: the caller sets it when the round moved on).
    """
    if not seed_dict:
        raise MaskError("the seed dictionary is empty")
    mask_seeds = []
    for update_pk, sealed in seed_dict.items():
        try:
            mask_seeds.append(ephemeral.open(sealed))
        except DecryptError as error:
            raise DecryptError(
                f"the mask seed of update participant {update_pk.hex()[:16]}… does not open"
            ) from error
    # Each mask is added where it is drawn: memory O(model length) whatever the number of seeds.
    masked_sum = sum_masks(_until(stop, mask_seeds), params.mask_config, params.model_length)
    return Sum2Payload(task_signature(keys, params.seed, SUM_TASK), masked_sum)


def _until(stop: threading.Event | None, seeds: list[bytes]) -> Iterator[bytes]:
    """The seeds, one at a time, until `stop` is set (`sum_masks` draws each as it comes)."""
    for done, seed in enumerate(seeds):
        if stop is not None and stop.is_set():
            raise PhaseEndedError(f"the phase ended after {done} of {len(seeds)} masks: derivation stopped")
        yield seed


def model_array(weights: Any, params: RoundParameters) -> npt.NDArray[Any]:
    return to_local_model(weights, params.mask_config.vect.data_type, params.model_length)
