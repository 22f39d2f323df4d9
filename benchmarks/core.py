"""PET core: masking, aggregation, unmasking, seal+sign, open+verify for 100k and 1M f32 weights.

Default config (Prime/F32/B0/M3). Floors, measured in the same run on the same data:
- masking: the raw ChaCha20 keystream for exactly the bytes the derivation consumed;
- aggregation and unmasking: one numpy add of arrays of the same shape;
- seal+sign / open+verify: libsodium's Ed25519 sign + sealed box (resp. open + verify)
  of the same message bytes, called directly through PyNaCl.
"""

from __future__ import annotations

import argparse

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from nacl.bindings import crypto_box_seal, crypto_box_seal_open, crypto_sign, crypto_sign_open
from nacl.signing import SigningKey

from benchmarks._timing import Row, median_seconds, print_rows
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.mask.codec import to_local_model
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.core.mask.masking import mask_model
from xaynet.core.mask.prng import Keystream, derive_mask
from xaynet.core.message.envelope import open_message, parse_message, seal_messages
from xaynet.core.message.payloads import UpdatePayload

PAIR = MaskConfigPair.same(DEFAULT_CONFIG)


def _keystream_floor(nbytes: int, repeats: int) -> float:
    """The cheapest way to get `nbytes` of ChaCha20 keystream: one call, or cache-sized chunks."""
    chunk = 1 << 21
    zeros, zero_chunk = bytes(nbytes), bytes(chunk)

    def whole() -> None:
        Cipher(algorithms.ChaCha20(b"k" * 32, bytes(16)), None).encryptor().update(zeros)

    def chunked() -> None:
        encryptor = Cipher(algorithms.ChaCha20(b"k" * 32, bytes(16)), None).encryptor()
        for _ in range(nbytes // chunk):
            encryptor.update(zero_chunk)
        encryptor.update(zero_chunk[: nbytes % chunk])

    return min(median_seconds(whole, repeats), median_seconds(chunked, repeats))


def bench(length: int, repeats: int) -> list[Row]:
    rng = np.random.default_rng(length)
    weights = to_local_model(rng.uniform(-1, 1, length), DEFAULT_CONFIG.data_type)
    seed = bytes(range(32))
    size = f"{length:,}"
    rows = []

    stream = Keystream(seed)
    # How many keystream bytes the derivation really consumes (rejection sampling).
    from xaynet.core.mask.prng import draw_elements

    draw_elements(stream, PAIR.unit, 1)
    draw_elements(stream, PAIR.vect, length)
    consumed = stream.consumed
    masking = median_seconds(lambda: mask_model(weights, 1.0, PAIR, seed), repeats)
    rows.append(
        Row(
            "derive mask + mask model",
            size,
            masking,
            f"ChaCha20 {consumed / 1e6:.1f} MB",
            _keystream_floor(consumed, repeats),
            3,
        )
    )

    masked, _ = mask_model(weights, 1.0, PAIR, seed)
    batch = max(1, min(100, 10_000_000 // length))  # stays below M3's 1000 models per aggregate
    running = [Aggregation(PAIR, length)]

    def fresh_sum() -> None:
        running[0] = Aggregation(PAIR, length)

    add_floor_a = masked.vect.copy()
    add_floor_b = masked.vect.copy()
    aggregate = median_seconds(lambda: running[0].add(masked), repeats, setup=fresh_sum, number=batch)
    add_floor = median_seconds(
        lambda: np.add(add_floor_a, add_floor_b, out=add_floor_a), repeats, number=batch
    )
    rows.append(Row("aggregate one masked model", size, aggregate, "numpy add", add_floor, 2))

    single = Aggregation(PAIR, length)
    single.add(masked)
    mask = derive_mask(seed, PAIR, length)
    unmask = median_seconds(lambda: single.unmask(mask), repeats)
    rows.append(Row("unmask global model", size, unmask, "numpy add", add_floor))

    keys = SigningKeyPair.generate()
    coordinator = EncryptKeyPair.generate()
    payload = UpdatePayload(bytes(64), bytes(64), masked, {bytes(32): bytes(80)})
    (sealed,) = seal_messages(keys, coordinator.public, payload)
    plain = open_message(sealed, coordinator)
    raw_payload = payload.to_bytes()
    sodium_key = SigningKey(keys.seed)

    def sodium_sign_seal() -> None:
        crypto_box_seal(
            crypto_sign(plain[64:], bytes(sodium_key._signing_key))[:64] + plain[64:], coordinator.public
        )

    def sodium_open_verify() -> None:
        opened = crypto_box_seal_open(sealed, coordinator.public, coordinator.secret)
        crypto_sign_open(opened[:64] + opened[64:], keys.public)

    del raw_payload
    seal_time = median_seconds(lambda: seal_messages(keys, coordinator.public, payload), repeats)
    rows.append(
        Row(
            "serialize + sign + seal update",
            size,
            seal_time,
            "libsodium sign + seal",
            median_seconds(sodium_sign_seal, repeats),
        )
    )
    open_time = median_seconds(
        lambda: parse_message(open_message(sealed, coordinator), coordinator.public), repeats
    )
    rows.append(
        Row(
            "open + verify + parse update",
            size,
            open_time,
            "libsodium open + verify",
            median_seconds(sodium_open_verify, repeats),
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks core", description=__doc__)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for length in args.lengths:
        rows += bench(length, args.repeats)
    print_rows("PET core, default config Prime/F32/B0/M3 (median of repeats)", rows)
