"""Key pairs build their PyNaCl key objects once, and stay plain values otherwise.

Rebuilding an X25519 `PrivateKey` or an Ed25519 `SigningKey` recomputes the public key (a
base-point multiplication); the coordinator did that for every sealed box it opened.
"""

from __future__ import annotations

import copy
import pickle

import pytest
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from xaynet.core import crypto
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, seal
from xaynet.core.errors import DecryptError


class _Counted:
    """Wraps a PyNaCl key class and counts how often a key object is built."""

    def __init__(self, wrapped: type) -> None:
        self.wrapped = wrapped
        self.built = 0

    def __call__(self, *args: object) -> object:
        self.built += 1
        return self.wrapped(*args)


def test_opening_many_boxes_builds_the_private_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = EncryptKeyPair.generate()
    boxes = [seal(keys.public, bytes([i]) * 40) for i in range(50)]
    counted = _Counted(PrivateKey)
    monkeypatch.setattr(crypto, "PrivateKey", counted)
    assert [keys.open(box) for box in boxes] == [bytes([i]) * 40 for i in range(50)]
    assert counted.built == 1


def test_signing_many_messages_builds_the_signing_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = SigningKeyPair.from_seed(bytes(range(32)))
    counted = _Counted(SigningKey)
    monkeypatch.setattr(crypto, "SigningKey", counted)
    signatures = [keys.sign(bytes([i])) for i in range(50)]
    assert counted.built == 1
    assert all(crypto.is_valid_signature(keys.public, bytes([i]), s) for i, s in enumerate(signatures))
    # Deterministic Ed25519: the cached key signs exactly like a freshly built one.
    assert signatures[7] == SigningKey(bytes(range(32))).sign(bytes([7])).signature


def test_a_failed_open_leaves_the_key_pair_usable() -> None:
    keys = EncryptKeyPair.generate()
    with pytest.raises(DecryptError):
        keys.open(seal(EncryptKeyPair.generate().public, b"for someone else"))
    assert keys.open(seal(keys.public, b"for us")) == b"for us"


@pytest.mark.parametrize("make", [EncryptKeyPair.generate, SigningKeyPair.generate])
def test_key_pairs_stay_plain_values_after_use(make: object) -> None:
    pair = make()  # type: ignore[operator]
    fresh = copy.deepcopy(pair)
    if isinstance(pair, EncryptKeyPair):
        pair.open(seal(pair.public, b"x"))
    else:
        pair.sign(b"x")
    # Equal, same hash and repr as an unused copy; pickles hold only the two byte fields.
    assert pair == fresh
    assert hash(pair) == hash(fresh)
    assert repr(pair) == repr(fresh)
    restored = pickle.loads(pickle.dumps(pair))
    assert restored == pair
    assert len(pickle.dumps(pair)) < 200
