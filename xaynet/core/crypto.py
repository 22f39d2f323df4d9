"""The libsodium constructions of the protocol, through PyNaCl (WIRE.md §1).

Ed25519 identities sign messages and task tickets; X25519 sealed boxes carry messages to the
coordinator and mask seeds to sum participants. Nothing here is hand-rolled: each function
is one library call plus the protocol's size checks and typed errors.

Large signed messages (updates) are signed and verified by OpenSSL through `cryptography`
instead: both hash the whole message with SHA-512, and OpenSSL's is about 1.5× as fast as
libsodium's portable one (verification −0.3 ms of a 100,000-weight update, `python -m
benchmarks chunks`). Signatures are deterministic, so the bytes are the same either way.
OpenSSL's verification checks only RFC 8032's equation, so the key and the signature's R are
first held to what libsodium requires of them (see `_verify_large`): both paths accept the
same signatures.

Key pairs keep the PyNaCl key objects they need, built on first use: building a
`PrivateKey` or `SigningKey` derives its public key (a base-point multiplication), which cost
the coordinator 10 % of its CPU when it was repeated for every sealed box it opened. The
objects stay out of equality, `repr` and pickles (which hold only the two byte fields).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError
from nacl.exceptions import CryptoError as NaclCryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox
from nacl.signing import SigningKey

from xaynet.core.errors import DecryptError, LengthError, SignatureError

PUBLIC_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
SEAL_OVERHEAD = 48
# From these sizes on a message is signed, and a signed message verified, by OpenSSL: its
# SHA-512 is ~1.5× libsodium's, and below them libsodium's smaller fixed cost wins (measured
# crossovers: signing ≈ 8–16 KiB, verifying ≈ 64–96 KiB; one verification of a 100-byte
# message ≈ 60 µs against OpenSSL's ≈ 125 µs).
OPENSSL_SIGN_BYTES = 16 * 1024
OPENSSL_VERIFY_BYTES = 96 * 1024
# Where OpenSSL's verdict is libsodium's. Both check the same (cofactorless) equation, but
# libsodium also refuses a key or an R that is not canonical (y ≥ p) or of small order. A point
# is of small order iff its y is one of these (the identity 1, the point of order 2 p − 1, those of
# order 4 at y = 0, and the order-8 y8 and p − y8: public constants, libsodium's blocklist).
_FIELD_PRIME = 2**255 - 19
_Y_BITS = (1 << 255) - 1  # the top bit of an encoding is the sign of x
_Y8 = int.from_bytes(
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
)
_SMALL_ORDER_Y = frozenset({0, 1, _FIELD_PRIME - 1, _Y8, _FIELD_PRIME - _Y8})
_BAD_SIGNATURE = "the signature does not verify with the sender's public key"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class SigningKeyPair:
    """A participant's long-term Ed25519 identity; `public` is its participant pk."""

    seed: bytes
    public: bytes

    @classmethod
    def generate(cls) -> SigningKeyPair:
        return cls.from_seed(bytes(SigningKey.generate()))

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKeyPair:
        if len(seed) != 32:
            raise LengthError(f"an Ed25519 seed has 32 bytes, got {len(seed)}")
        return cls(seed, bytes(SigningKey(seed).verify_key))

    @classmethod
    def from_libsodium_secret(cls, secret: bytes) -> SigningKeyPair:
        """From libsodium's 64-byte form `seed ‖ public key` (the SDK's saved state)."""
        if len(secret) != 64:
            raise LengthError(f"a libsodium Ed25519 secret key has 64 bytes, got {len(secret)}")
        pair = cls.from_seed(secret[:32])
        if pair.public != secret[32:]:
            raise SignatureError("the secret key's public half does not match its seed")
        return pair

    @cached_property
    def _signing_key(self) -> SigningKey:
        return SigningKey(self.seed)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.seed, self.public))

    @cached_property
    def _openssl_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def sign(self, message: bytes) -> bytes:
        """Detached Ed25519 signature (64 bytes); deterministic.

        Ed25519 signatures are a function of the seed and the message (RFC 8032), so OpenSSL
        signs large messages byte for byte as libsodium would, in half the time (two SHA-512
        passes over the message: 2.7 → 1.4 ms for a 100,000-weight update)."""
        if len(message) >= OPENSSL_SIGN_BYTES:
            return self._openssl_key.sign(message)
        return self._signing_key.sign(message).signature


def verify(public_key: bytes, message: bytes | memoryview, signature: bytes | memoryview) -> None:
    """Raise `SignatureError` unless `signature` is `public_key`'s over `message`."""
    if len(public_key) != PUBLIC_KEY_LENGTH or len(signature) != SIGNATURE_LENGTH:
        raise SignatureError("malformed public key or signature")
    try:
        crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (BadSignatureError, NaclCryptoError, ValueError) as exc:
        raise SignatureError(_BAD_SIGNATURE) from exc


def verify_signed(public_key: bytes, signed: bytes) -> None:
    """Raise `SignatureError` unless `signed` is `signature ‖ message` signed by `public_key`.

    libsodium's combined form, which is what a message plaintext already is (the signature at
    [0, 64), the signed bytes after it): no `signature ‖ message` is assembled from parts first
    (libsodium still writes the opened message to a buffer of its own; OpenSSL, for large
    messages, reads it in place)."""
    if len(public_key) != PUBLIC_KEY_LENGTH or len(signed) < SIGNATURE_LENGTH:
        raise SignatureError("malformed public key or signature")
    if len(signed) >= OPENSSL_VERIFY_BYTES:
        _verify_large(public_key, signed)
    else:
        _verify_with_libsodium(public_key, signed)


def _plain_point(encoded: bytes) -> bool:
    """Canonical and not of small order: byte arithmetic, where libsodium's own check (which
    also tests the prime-order subgroup, a scalar multiplication) costs ~45 µs."""
    y = int.from_bytes(encoded, "little") & _Y_BITS
    return y < _FIELD_PRIME and y not in _SMALL_ORDER_Y


def _verify_large(public_key: bytes, signed: bytes) -> None:
    """OpenSSL's Ed25519 verification where its verdict is libsodium's.

    Both check RFC 8032's equation without the cofactor, on the same reduced hash, and refuse
    an S ≥ L or a key that is not on the curve. libsodium also refuses a public key that is
    not canonical or of small order (with such a key anyone could sign: the identity key
    verifies R = S·B for every message) and an R of small order (a key's owner can make one
    verify under a key with a small-order component). A signature with such a key or R is
    left to libsodium itself; every other one gets the same verdict from OpenSSL."""
    if not (_plain_point(public_key) and _plain_point(signed[:32])):
        _verify_with_libsodium(public_key, signed)
        return
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key)
        key.verify(signed[:SIGNATURE_LENGTH], memoryview(signed)[SIGNATURE_LENGTH:])
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(_BAD_SIGNATURE) from exc


def _verify_with_libsodium(public_key: bytes, signed: bytes) -> None:
    try:
        crypto_sign_open(signed, public_key)
    except (BadSignatureError, NaclCryptoError, ValueError) as exc:
        raise SignatureError(_BAD_SIGNATURE) from exc


def is_valid_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        verify(public_key, message, signature)
    except SignatureError:
        return False
    return True


@dataclass(frozen=True)
class EncryptKeyPair:
    """An X25519 key pair: the coordinator's round key or a sum participant's ephemeral key."""

    secret: bytes
    public: bytes

    @classmethod
    def generate(cls) -> EncryptKeyPair:
        return cls.from_secret(bytes(PrivateKey.generate()))

    @classmethod
    def from_secret(cls, secret: bytes) -> EncryptKeyPair:
        if len(secret) != 32:
            raise LengthError(f"an X25519 secret key has 32 bytes, got {len(secret)}")
        return cls(secret, bytes(PrivateKey(secret).public_key))

    @cached_property
    def _sealed_box(self) -> SealedBox[PrivateKey]:
        return SealedBox(PrivateKey(self.secret))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.secret, self.public))

    def open(self, sealed: bytes | memoryview) -> bytes:
        """Open a sealed box addressed to this key pair."""
        if len(sealed) < SEAL_OVERHEAD:
            raise DecryptError(f"a sealed box has at least {SEAL_OVERHEAD} bytes, got {len(sealed)}")
        try:
            return self._sealed_box.decrypt(bytes(sealed))
        except NaclCryptoError as exc:
            raise DecryptError(
                "the message does not open with this round's key (sealed to another key, "
                "e.g. an earlier round's, or corrupted)"
            ) from exc


def seal(recipient_public: bytes, plaintext: bytes) -> bytes:
    """Sealed box of `plaintext` to an X25519 public key: 48 bytes longer, randomised."""
    if len(recipient_public) != PUBLIC_KEY_LENGTH:
        raise LengthError(f"an X25519 public key has 32 bytes, got {len(recipient_public)}")
    return SealedBox(PublicKey(recipient_public)).encrypt(plaintext)
