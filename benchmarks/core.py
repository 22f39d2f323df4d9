"""PET core: masking, aggregation, unmasking, seal+sign, open+verify for 100k and 1M f32 weights.

Default config (Prime/F32/B0/M3). Floors, measured in the same run on the same data:
- mask derivation (compiled kernel and numpy fallback) and Sum2 (derive + add N masks): the
  raw ChaCha20 keystream for exactly the bytes the derivations consumed, timed interleaved
  with them (one sample of each in turn) so the shared machine's load hits both alike; the
  floor is the best median of three ways (64 KiB, 512 KiB or 2 MiB steps into one buffer);
- masking: the same keystream floor;
- aggregation and unmasking: one numpy add of arrays of the same shape;
- seal+sign / open+verify: libsodium's Ed25519 sign + sealed box (resp. open + verify)
  of the same message bytes, called directly through PyNaCl.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from nacl.bindings import crypto_box_seal, crypto_box_seal_open, crypto_sign, crypto_sign_open
from nacl.signing import SigningKey

from benchmarks._timing import Row, median_seconds, print_rows
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair
from xaynet.core.mask import kernel
from xaynet.core.mask.aggregate import Aggregation
from xaynet.core.mask.codec import to_local_model
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.core.mask.masking import mask_model
from xaynet.core.mask.masksum import sum_masks
from xaynet.core.mask.model import GlobalModel
from xaynet.core.mask.object import MaskObject
from xaynet.core.mask.prng import Keystream, derive_mask, draw_elements
from xaynet.core.message.envelope import open_message, parse_message, seal_messages
from xaynet.core.message.payloads import UpdatePayload

PAIR = MaskConfigPair.same(DEFAULT_CONFIG)


def _consumed(seed: bytes, length: int) -> int:
    """Keystream bytes the derivation of one mask really consumes (rejection sampling)."""
    stream = Keystream(seed)
    draw_elements(stream, PAIR.unit, 1)
    draw_elements(stream, PAIR.vect, length)
    return stream.consumed


def _keystream_in_chunks(nbytes: int, chunk: int) -> Callable[[], None]:
    """ChaCha20 keystream of `nbytes` into one reused buffer: no allocation in the timing."""
    zeros, out = bytes(chunk), bytearray(chunk)

    def run() -> None:
        encryptor = Cipher(algorithms.ChaCha20(b"k" * 32, bytes(16)), None).encryptor()
        for _ in range(nbytes // chunk):
            encryptor.update_into(zeros, out)
        encryptor.update_into(zeros[: nbytes % chunk], out)

    return run


def _interleaved(actions: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each action, sampled in turn (a, b, c, a, b, c, ...)."""
    samples: dict[str, list[float]] = {name: [] for name in actions}
    for action in actions.values():
        action()  # warm-up: caches, the kernel's compilation
    for _ in range(repeats):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def _floor_actions(nbytes: int) -> dict[str, Callable[[], object]]:
    """The cheapest ways to get the keystream: the floor is the best of their medians."""
    return {f"floor {chunk}": _keystream_in_chunks(nbytes, chunk) for chunk in (1 << 16, 1 << 19, 1 << 21)}


def _best_floor(medians: dict[str, float]) -> float:
    return min(value for name, value in medians.items() if name.startswith("floor "))


def _keystream_floor(nbytes: int, repeats: int) -> float:
    return _best_floor(_interleaved(_floor_actions(nbytes), repeats))


def bench_derivation(length: int, repeats: int, sum2_masks: int) -> list[Row]:
    """One mask on each path, and Sum2's N masks, against the same-run ChaCha20 floor."""
    seed = bytes(range(32))
    size = f"{length:,}"
    consumed = _consumed(seed, length)
    has_kernel = kernel.load() is not None
    actions: dict[str, Callable[[], object]] = {
        "numpy": lambda: derive_mask(seed, PAIR, length, compiled=False),
        **_floor_actions(consumed),
    }
    if has_kernel:
        actions["compiled"] = lambda: derive_mask(seed, PAIR, length)
    medians = _interleaved(actions, repeats)
    floor = _best_floor(medians)
    what = f"ChaCha20 {consumed / 1e6:.1f} MB"
    rows = []
    if has_kernel:
        rows.append(Row("derive mask (compiled kernel)", size, medians["compiled"], what, floor, 1.5))
    rows.append(Row("derive mask (numpy fallback)", size, medians["numpy"], what, floor))

    # Sum2: what a sum participant does once its seeds are open. `sum_masks` adds each mask
    # into the running sum as it is drawn; the loop is derive_mask + Aggregation.add per seed
    # (xaynet.sdk.tasks.compose_sum2). Memory stays O(L) whatever N.
    seeds = [hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(sum2_masks)]
    total = sum(_consumed(s, length) for s in seeds)

    def sum2_loop() -> MaskObject:
        aggregation = Aggregation(PAIR, length)
        for mask_seed in seeds:
            aggregation.add(derive_mask(mask_seed, PAIR, length))
        return aggregation.masked_sum()

    def sum2_fused() -> MaskObject:
        return sum_masks(seeds, PAIR, length)

    medians = _interleaved({"fused": sum2_fused, "loop": sum2_loop, **_floor_actions(total)}, repeats)
    floor = _best_floor(medians)
    what = f"ChaCha20 {total / 1e6:.0f} MB"
    for name, action, label in (
        ("fused", sum2_fused, "sum_masks"),
        ("loop", sum2_loop, "derive_mask + Aggregation.add"),
    ):
        tracemalloc.start()
        action()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        title = f"Sum2, {sum2_masks} masks: {label} (peak {peak / (8 * length):.1f} × 8L B)"
        rows.append(Row(title, size, medians[name], what, floor, 1.5 if name == "fused" else None))
    return rows


def bench(length: int, repeats: int) -> list[Row]:
    rng = np.random.default_rng(length)
    weights = to_local_model(rng.uniform(-1, 1, length), DEFAULT_CONFIG.data_type)
    seed = bytes(range(32))
    size = f"{length:,}"
    rows = []
    consumed = _consumed(seed, length)
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

    # `xaynet model get` and every client read the /model bincode (vectorised decoder).
    body = single.unmask(mask).to_bincode()
    decode = median_seconds(lambda: GlobalModel.from_bincode(body), repeats)
    digest = median_seconds(lambda: hashlib.sha256(body).digest(), repeats)
    rows.append(Row("decode /model body", size, decode, "sha256 of the body", digest))

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
    parser.add_argument(
        "--sum2-elements",
        type=int,
        default=2_000_000,
        help="Sum2 derives this many elements in all: N = max(10, this / length) masks (default 2M)",
    )
    parser.add_argument("--derivation-only", action="store_true", help="only the derivation and Sum2 rows")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    for length in args.lengths:
        rows += bench_derivation(length, args.repeats, max(10, args.sum2_elements // length))
        if not args.derivation_only:
            rows += bench(length, args.repeats)
    print_rows("PET core, default config Prime/F32/B0/M3 (median of repeats)", rows)
