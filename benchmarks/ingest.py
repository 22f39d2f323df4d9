"""Coordinator ingest: N update messages POSTed over loopback to a coordinator process.

Default config (Prime/F32/B0/M3), 100k weights, 10 sum participants. The coordinator runs as
its own process (`xaynet coordinator`), held in the Update phase until all N updates are in;
this process prepares the N sealed updates first, then POSTs them with a few concurrent
connections and times first request to last answer. Floor, same run, same bytes: libsodium
open + verify of each body plus one numpy add of a model-sized array, single-threaded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from nacl.bindings import crypto_box_seal_open, crypto_sign_open

from benchmarks._timing import Row, print_rows
from tests.pet_client import PetClient, ephemeral, keys_for, sealed
from tests.processes import coordinator_process, free_port, pet_config, redis_server, wait_until
from xaynet.core.crypto import EncryptKeyPair, seal
from xaynet.core.message.envelope import encode_messages
from xaynet.sdk.tasks import Task, compose_sum, compose_update


def update_phase_config(port: int, length: int, updates: int, summers: int, redis_url: str | None) -> str:
    """Held in Update until all `updates` are in: min = max update count, no phase time limits."""
    return pet_config(
        length,
        port=port,
        redis_url=redis_url,
        namespace="bench",
        sum_prob=0.5,
        update_prob=1.0,
        min_sum_count=summers,
        min_update_count=updates,
        times=(0, 0, 0),
        max_time=3600,
        max_counts=(summers, updates, summers),
        log_filter="warn",
    )


async def _post_all(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[str]]:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    results: list[str] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(f"{url}/message", data=body) as response:
                    await response.read()
                    results.append(response.headers.get("X-Xaynet-Result", str(response.status)))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, results


def _floor(bodies: list[bytes], keys: EncryptKeyPair, length: int) -> float:
    accumulator = np.zeros(length, dtype=np.uint64)
    addend = np.ones(length, dtype=np.uint64)
    started = time.perf_counter()
    for body in bodies:
        plain = crypto_box_seal_open(body, keys.public, keys.secret)
        crypto_sign_open(plain[:64] + plain[64:], plain[64:96])
        np.add(accumulator, addend, out=accumulator)
    return time.perf_counter() - started


def bench(length: int, updates: int, summers: int, concurrency: int, store: str) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        redis = (
            redis_server(
                directory,
                appendonly=store.startswith("redis-aof"),
                appendfsync="always" if store == "redis-aof-always" else "everysec",
            )
            if store.startswith("redis")
            else None
        )
        redis_url = stack.enter_context(redis).url if redis is not None else None
        port = free_port()
        config = update_phase_config(port, length, updates, summers, redis_url)
        coordinator = stack.enter_context(coordinator_process(directory, config, port))
        client = PetClient(coordinator.url)
        wait_until(lambda: coordinator.status()["phase"] == "sum", 30, "the sum phase")
        params = client.params()
        for _ in range(summers):
            keys = keys_for(params, Task.SUM)
            assert (
                client.post(sealed(keys, params, compose_sum(keys, params, ephemeral()))).result == "accepted"
            )
        wait_until(lambda: coordinator.status()["phase"] == "update", 30, "the update phase")
        sums = client.sums()
        assert sums is not None
        assert len(sums) == summers
        rng = np.random.default_rng(0)
        print(f"preparing {updates} sealed updates of {length:,} weights…", file=sys.stderr)
        floor_keys = EncryptKeyPair.generate()
        bodies, floor_bodies = [], []
        for _ in range(updates):
            keys = keys_for(params, Task.UPDATE)
            payload = compose_update(keys, params, sums, rng.uniform(-1, 1, length).astype(np.float32))
            (plain,) = encode_messages(keys, params.pk, payload)
            bodies.append(seal(params.pk, plain))
            floor_bodies.append(seal(floor_keys.public, plain))  # the same bytes, to a key we hold
        seconds, results = asyncio.run(_post_all(coordinator.url, bodies, concurrency))
        assert results.count("accepted") == updates, {r: results.count(r) for r in set(results)}
    total = sum(len(b) for b in bodies)
    floor = _floor(floor_bodies, floor_keys, length)
    per_update = seconds / updates
    size = f"{updates} × {length:,} ({store})"
    print(
        f"ingest ({store}): {updates / seconds:.1f} updates/s, {total / seconds / 1e6:.1f} MB/s; "
        f"floor {updates / floor:.1f} updates/s; ours = {floor / seconds:.0%} of the floor",
        file=sys.stderr,
    )
    return [
        Row(
            "ingest one update (POST → aggregated)",
            size,
            per_update,
            "libsodium open+verify + numpy add",
            floor / updates,
            None,
        )
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks ingest", description=__doc__)
    parser.add_argument("--length", type=int, default=100_000)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--summers", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--store",
        choices=["memory", "redis", "redis-aof", "redis-aof-always"],
        nargs="+",
        default=["memory", "redis", "redis-aof"],
        help="redis: no persistence; redis-aof: appendonly with fsync every second; "
        "redis-aof-always: appendonly with fsync before every reply",
    )
    args = parser.parse_args(argv)
    if any(s.startswith("redis") for s in args.store) and shutil.which("redis-server") is None:
        parser.error("redis-server is not installed")
    rows = []
    for store in args.store:
        rows += bench(args.length, args.updates, args.summers, args.concurrency, store)
    print_rows("Coordinator ingest over loopback (one timed batch per store)", rows)
