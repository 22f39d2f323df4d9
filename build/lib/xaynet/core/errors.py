"""Typed errors of the PET core.

Every failure of `xaynet.core` is one of these. Callers turn them into HTTP answers, log
lines, metrics labels or Kubernetes conditions at the edge; `reason` is a short stable
identifier for exactly that purpose (a Prometheus label value, a condition reason), and the
message says what was wrong in words a user can act on.
"""

from __future__ import annotations


class XaynetError(Exception):
    """Base of every error raised by `xaynet.core`."""

    reason: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DecodeError(XaynetError, ValueError):
    """Bytes that are not a valid encoding of what they claim to be."""

    reason = "malformed"


class LengthError(DecodeError):
    """A buffer or field is shorter or longer than its layout allows."""

    reason = "bad_length"


class UnknownTagError(DecodeError):
    """A message tag or enum value outside the defined set."""

    reason = "unknown_tag"


class InvalidMaskConfigError(DecodeError):
    """Four mask-config bytes (or bincode indices) that name no configuration."""

    reason = "invalid_mask_config"


class DuplicateKeyError(DecodeError):
    """A dictionary on the wire lists the same key twice."""

    reason = "duplicate_key"


class CryptoError(XaynetError):
    """A cryptographic check failed."""

    reason = "crypto"


class DecryptError(CryptoError):
    """A sealed box that does not open with the key it was supposed to be sealed to."""

    reason = "decrypt"


class SignatureError(CryptoError):
    """A signature that does not verify with the key it claims."""

    reason = "bad_signature"


class KeyMismatchError(CryptoError):
    """A message addressed to a different coordinator key (e.g. an earlier round's)."""

    reason = "wrong_coordinator_key"


class MaskError(XaynetError, ValueError):
    """Masking arithmetic refused its inputs."""

    reason = "mask"


class ConfigMismatchError(MaskError):
    """Two mask objects (or an object and an aggregate) use different configurations."""

    reason = "config_mismatch"


class ModelLengthError(MaskError):
    """A model or mask whose number of elements differs from the round's model length."""

    reason = "model_length_mismatch"


class ElementRangeError(MaskError):
    """A group element that is not smaller than the group order."""

    reason = "element_out_of_range"


class TooManyModelsError(MaskError):
    """More objects aggregated than the mask config's model type allows."""

    reason = "too_many_models"


class NoModelError(MaskError):
    """Unmasking an aggregate that holds no model."""

    reason = "no_model"


class ZeroScalarSumError(MaskError):
    """Every aggregated scalar was zero, so the weighted mean is undefined.

    The original coordinator panics here; we report it as a failed unmask instead.
    """

    reason = "zero_scalar_sum"


class EncodingError(MaskError):
    """Local weights that cannot be represented in the round's data type."""

    reason = "bad_local_model"


class MultipartError(XaynetError):
    """A chunk that cannot be buffered or a chunk group that does not reassemble."""

    reason = "multipart"
