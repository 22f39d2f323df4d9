"""Large messages are signed and verified by OpenSSL, small ones by libsodium: same signatures, same verdicts.

OpenSSL checks only RFC 8032's equation. libsodium also refuses keys of small order or in
non-canonical form and an R of small order; `verify_signed` must refuse those on the OpenSSL
path too, or anyone could sign as the identity key, and a key's owner could send a signature the
original coordinator (libsodium) refuses.
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.bindings import (
    crypto_core_ed25519_add,
    crypto_core_ed25519_scalar_add,
    crypto_core_ed25519_scalar_mul,
    crypto_core_ed25519_scalar_reduce,
    crypto_core_ed25519_sub,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_sign_open,
)
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

from xaynet.core import crypto
from xaynet.core.crypto import OPENSSL_SIGN_BYTES, OPENSSL_VERIFY_BYTES, SigningKeyPair, verify_signed
from xaynet.core.errors import SignatureError

IDENTITY = bytes([1]) + bytes(31)
BASE_POINT = bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")
# The encodings of points of small order that libsodium's blocklist names (public constants).
SMALL_ORDER_POINTS = [
    IDENTITY,
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    bytes(32),
    bytes(31) + b"\x80",
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
]
KEYS = SigningKeyPair.from_seed(bytes(range(32)))
LARGE = bytes(range(256)) * (OPENSSL_VERIFY_BYTES // 256 + 1)
SMALL = LARGE[:3000]


def libsodium_accepts(public_key: bytes, signed: bytes) -> bool:
    try:
        crypto_sign_open(signed, public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


def ours_accepts(public_key: bytes, signed: bytes) -> bool:
    try:
        verify_signed(public_key, signed)
    except SignatureError:
        return False
    return True


def openssl_alone_accepts(public_key: bytes, signed: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signed[:64], signed[64:])
    except Exception:
        return False
    return True


@pytest.mark.parametrize("message", [SMALL, LARGE], ids=["small (libsodium)", "large (OpenSSL)"])
def test_an_honest_signature_verifies_on_both_paths(message: bytes) -> None:
    signed = KEYS.sign(message) + message
    assert ours_accepts(KEYS.public, signed)
    assert libsodium_accepts(KEYS.public, signed)


def _flip(data: bytes, bit: int) -> bytes:
    mutated = bytearray(data)
    mutated[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutated)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    part=st.sampled_from(["key", "signature", "message"]),
    bit=st.integers(min_value=0, max_value=255),
    size=st.sampled_from([len(SMALL), len(LARGE)]),
)
def test_any_flipped_bit_is_refused_like_libsodium(part: str, bit: int, size: int) -> None:
    message = LARGE[:size]
    signed = KEYS.sign(message) + message
    key = KEYS.public
    if part == "key":
        key = _flip(key, bit)
    elif part == "signature":
        signed = _flip(signed, bit % 512)
    else:
        signed = signed[:64] + _flip(message, bit * (size * 8 // 256))
    assert ours_accepts(key, signed) == libsodium_accepts(key, signed) is False


def test_a_non_canonical_s_is_refused() -> None:
    """S + L satisfies the same equation; libsodium and OpenSSL both require S < L."""
    order = 2**252 + 27742317777372353535851937790883648493
    signature = KEYS.sign(LARGE)
    s_plus_order = (int.from_bytes(signature[32:], "little") + order).to_bytes(32, "little")
    signed = signature[:32] + s_plus_order + LARGE
    assert not ours_accepts(KEYS.public, signed)
    assert not libsodium_accepts(KEYS.public, signed)


@pytest.mark.parametrize("key", SMALL_ORDER_POINTS, ids=lambda k: k.hex()[:8])
def test_a_small_order_key_is_refused(key: bytes) -> None:
    """With the identity key, S = 1 and R = B verify for every message under OpenSSL alone."""
    signed = BASE_POINT + (1).to_bytes(32, "little") + LARGE
    if key == IDENTITY:
        assert openssl_alone_accepts(key, signed)  # what the extra check is for
    assert not ours_accepts(key, signed)
    assert not libsodium_accepts(key, signed)


def test_an_owner_signature_with_identity_r_is_refused() -> None:
    """r = 0 gives R = identity and S = k·a: OpenSSL accepts it, libsodium refuses it."""
    secret = _secret_scalar(KEYS.seed)
    k = crypto_core_ed25519_scalar_reduce(hashlib.sha512(IDENTITY + KEYS.public + LARGE).digest())
    signed = IDENTITY + crypto_core_ed25519_scalar_mul(k, secret) + LARGE
    assert openssl_alone_accepts(KEYS.public, signed)  # the equation holds
    assert not libsodium_accepts(KEYS.public, signed)
    assert not ours_accepts(KEYS.public, signed)


@pytest.mark.parametrize("size", [len(SMALL), OPENSSL_SIGN_BYTES - 1, OPENSSL_SIGN_BYTES, len(LARGE)])
def test_large_messages_are_signed_byte_for_byte_as_libsodium_signs(size: int) -> None:
    """Signing switches to OpenSSL at OPENSSL_SIGN_BYTES: the signature must not change with it."""
    message = (LARGE * 2)[:size]
    assert KEYS.sign(message) == SigningKey(KEYS.seed).sign(message).signature


def _secret_scalar(seed: bytes) -> bytes:
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return crypto_core_ed25519_scalar_reduce(bytes(digest) + bytes(32))


def test_a_mixed_order_key_gets_libsodium_s_verdict() -> None:
    """A' = A + T (T of order 8) is canonical and not of small order, so libsodium accepts its
    signatures where the equation holds; OpenSSL (which verifies it: it passes the key check)
    must agree, and refuse the same forgery."""
    torsion = SMALL_ORDER_POINTS[4]  # order 8
    mixed = crypto_core_ed25519_add(KEYS.public, torsion)
    secret = _secret_scalar(KEYS.seed)
    for attempt in range(200):  # R = rB verifies under A' when k·T = 0, i.e. k ≡ 0 (mod 8)
        r = crypto_core_ed25519_scalar_reduce(hashlib.sha512(attempt.to_bytes(4, "little")).digest())
        big_r = crypto_scalarmult_ed25519_base_noclamp(r)
        k = crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + mixed + LARGE).digest())
        if k[0] % 8 == 0:
            break
    else:
        pytest.fail("no nonce with k ≡ 0 (mod 8) in 200 tries")
    s = crypto_core_ed25519_scalar_add(r, crypto_core_ed25519_scalar_mul(k, secret))
    signed = big_r + s + LARGE
    assert libsodium_accepts(mixed, signed)
    assert ours_accepts(mixed, signed)
    forged = big_r + s + _flip(LARGE, 7)
    assert not ours_accepts(mixed, forged) and not libsodium_accepts(mixed, forged)


FIELD_PRIME = 2**255 - 19


def _torsion_multiples(torsion: bytes) -> list[bytes]:
    """[0·T, 1·T, …, 7·T] for a point T of order 8 (libsodium's scalar multiplication refuses
    points outside the prime-order subgroup; point addition only asks for a point on the curve)."""
    multiples = [IDENTITY]
    for _ in range(7):
        multiples.append(crypto_core_ed25519_add(multiples[-1], torsion))
    return multiples


@pytest.mark.parametrize("j", range(1, 8))
def test_an_owner_signature_with_a_small_order_r_under_a_mixed_order_key_is_refused(j: int) -> None:
    """With A' = A + T and r = 0, S = k·a gives S·B − k·A' = −(k mod 8)·T: a small-order R that
    is not the identity. The equation holds (OpenSSL alone accepts), libsodium refuses the R."""
    torsion = SMALL_ORDER_POINTS[4]  # order 8
    multiples = _torsion_multiples(torsion)
    mixed = crypto_core_ed25519_add(KEYS.public, torsion)
    big_r = crypto_core_ed25519_sub(IDENTITY, multiples[j])  # −j·T
    secret = _secret_scalar(KEYS.seed)
    for attempt in range(400):  # k ≡ j (mod 8): 1 in 8
        message = LARGE + attempt.to_bytes(4, "little")
        k = crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + mixed + message).digest())
        if k[0] % 8 == j:
            break
    else:
        pytest.fail(f"no message with k ≡ {j} (mod 8) in 400 tries")
    signed = big_r + crypto_core_ed25519_scalar_mul(k, secret) + message
    assert openssl_alone_accepts(mixed, signed), "the equation holds"
    assert not libsodium_accepts(mixed, signed)
    assert not ours_accepts(mixed, signed)


def _encodings_of_small_order_and_non_canonical_points() -> list[bytes]:
    """Every encoding libsodium refuses as a key or an R before the equation: the small-order
    y values and every non-canonical y (p … 2^255 − 1), each with both signs of x."""
    ys = [
        0,
        1,
        FIELD_PRIME - 1,
        *(int.from_bytes(p, "little") & ((1 << 255) - 1) for p in SMALL_ORDER_POINTS[4:]),
    ]
    ys += range(FIELD_PRIME, 2**255)
    return [(y | sign << 255).to_bytes(32, "little") for y in ys for sign in (0, 1)]


@pytest.mark.parametrize(
    "point", _encodings_of_small_order_and_non_canonical_points(), ids=lambda p: p.hex()[:8] + p.hex()[-4:]
)
def test_a_small_order_or_non_canonical_key_or_r_gets_libsodium_s_verdict(point: bytes) -> None:
    honest = KEYS.sign(LARGE) + LARGE
    as_r = point + honest[32:]
    as_key = BASE_POINT + (1).to_bytes(32, "little") + LARGE  # verifies under the identity key
    assert ours_accepts(KEYS.public, as_r) == libsodium_accepts(KEYS.public, as_r) is False
    assert ours_accepts(point, as_key) == libsodium_accepts(point, as_key) is False
    assert ours_accepts(point, honest) == libsodium_accepts(point, honest) is False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.binary(min_size=32, max_size=32),
    torsion=st.integers(min_value=0, max_value=7),
    nonce=st.binary(min_size=8, max_size=8),
)
def test_any_key_with_a_torsion_component_gets_libsodium_s_verdict(
    seed: bytes, torsion: int, nonce: bytes
) -> None:
    """A key A + j·T and a signature made with its secret as if T were not there: valid
    (libsodium accepts) exactly when k·j·T vanishes; ours must say what libsodium says."""
    keys = SigningKeyPair.from_seed(seed)
    key = crypto_core_ed25519_add(keys.public, _torsion_multiples(SMALL_ORDER_POINTS[4])[torsion])
    r = crypto_core_ed25519_scalar_reduce(hashlib.sha512(nonce).digest())
    big_r = crypto_scalarmult_ed25519_base_noclamp(r)
    k = crypto_core_ed25519_scalar_reduce(hashlib.sha512(big_r + key + LARGE).digest())
    signed = (
        big_r
        + crypto_core_ed25519_scalar_add(r, crypto_core_ed25519_scalar_mul(k, _secret_scalar(seed)))
        + LARGE
    )
    assert ours_accepts(key, signed) == libsodium_accepts(key, signed)


# Every encoding of a point of small order, with its order (y = p and p + 1 are non-canonical
# encodings of y = 0 and 1), with either sign of x.
_SMALL_ORDER_Y = [
    (1, 1),
    (FIELD_PRIME + 1, 1),
    (FIELD_PRIME - 1, 2),
    (0, 4),
    (FIELD_PRIME, 4),
    *((int.from_bytes(p, "little"), 8) for p in SMALL_ORDER_POINTS[4:]),
]
_SMALL_ORDER_KEYS = [
    ((y | sign << 255).to_bytes(32, "little"), order) for y, order in _SMALL_ORDER_Y for sign in (0, 1)
]


@pytest.mark.parametrize(
    ("key", "order"), _SMALL_ORDER_KEYS, ids=[k.hex()[:6] + k.hex()[-4:] for k, _ in _SMALL_ORDER_KEYS]
)
def test_a_forgery_under_any_small_order_key_is_refused(key: bytes, order: int) -> None:
    """R = B, S = 1 verifies under a key T of small order whenever k ≡ 0 (mod the order of T):
    a message is found for each key, so the key half of the gate is exercised for every one
    (with one fixed message OpenSSL alone refuses most of them anyway)."""
    for attempt in range(400):
        message = LARGE + attempt.to_bytes(2, "little")
        k = crypto_core_ed25519_scalar_reduce(hashlib.sha512(BASE_POINT + key + message).digest())
        if k[0] % order == 0:
            break
    else:
        pytest.fail(f"no message with k ≡ 0 (mod {order}) in 400 tries")
    signed = BASE_POINT + (1).to_bytes(32, "little") + message
    assert openssl_alone_accepts(key, signed), "the forgery verifies under the equation alone"
    assert not libsodium_accepts(key, signed)
    assert not ours_accepts(key, signed)


def test_an_honest_large_message_is_verified_by_openssl(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the gate: honest large messages do not fall back to libsodium (its SHA-512
    is ~1.5× slower)."""

    def libsodium(public_key: bytes, signed: bytes) -> None:
        raise AssertionError("verified by libsodium")

    monkeypatch.setattr(crypto, "_verify_with_libsodium", libsodium)
    for seed in range(20):
        keys = SigningKeyPair.from_seed(bytes([seed]) * 32)
        verify_signed(keys.public, keys.sign(LARGE) + LARGE)
