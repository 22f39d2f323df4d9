"""The multipart buffer is bounded by one global byte budget: an attacker who floods the
coordinator with first chunks from self-made keys (they pass every check a chunk can have)
only evicts the oldest incomplete messages, genuine participants still complete the round,
and the coordinator's memory stays under baseline + budget + a stated margin.

Real `xaynet coordinator` process (memory store: the chunks live in its RSS), real HTTP.
"""

from __future__ import annotations

import secrets
import threading
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis

from tests.coordinator.hand_round import HandRound
from tests.coordinator.stores import store_clients  # noqa: F401 - the `stores` fixture
from tests.processes import coordinator_process, free_port, http_post, pet_config, redis_server
from xaynet.coordinator.store.base import Store
from xaynet.coordinator.store.lease import LeaseKeeper
from xaynet.coordinator.store.redis_store import RedisStore
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import SigningKeyPair, seal
from xaynet.core.message.assembler import CHUNK_OVERHEAD, ChunkAssembler, ChunkGroup, ChunkLimits, ChunkStatus
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.envelope import sign_message
from xaynet.core.message.header import Tag

BUDGET = 4 * 1024 * 1024
# The stated margin: interpreter heap growth and fragmentation, per-request buffers, the
# index of ~1,000 open groups (measured: +2 MiB over the budget on an idle machine).
MARGIN = 8 * 1024 * 1024
FIRST_CHUNKS = 2000
# An attacker's chunks can be as large as any message of the round (~11 KiB here), not only the
# SDK's 3,720 bytes: 2,000 of them would hold ~19 MiB without the budget.
CHUNK_DATA = 10_000


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def first_chunk(params: RoundParameters) -> bytes:
    keys = SigningKeyPair.generate()  # a self-made identity: signature and round key are valid
    chunk = ChunkPayload(0, secrets.randbelow(1 << 16), False, secrets.token_bytes(CHUNK_DATA))
    return seal(params.pk, sign_message(keys, params.pk, Tag.UPDATE, chunk.to_bytes(), multipart=True))


def test_first_chunk_flood_is_bounded_and_genuine_participants_complete(tmp_path: Path) -> None:
    port = free_port()
    config = pet_config(
        7,
        port=port,
        sum_prob=0.5,
        min_update_count=3,
        times=(0, 0, 0),
        max_time=300,
        extra=f"[multipart]\nmax_buffer_bytes = {BUDGET}\n",
    )
    with coordinator_process(tmp_path, config, port) as coordinator:
        assert coordinator.process is not None
        pid = coordinator.process.pid
        attack: dict[str, list[int]] = {"statuses": []}
        flooding = threading.Event()

        def flood(params: RoundParameters) -> None:
            bodies = [first_chunk(params) for _ in range(FIRST_CHUNKS)]
            for index, body in enumerate(bodies):
                attack["statuses"].append(http_post(coordinator.url + "/message", body)[0])
                if index == FIRST_CHUNKS // 2:
                    flooding.set()  # the budget (about 1,100 chunks) is full: evictions now
            flooding.set()

        attacker: list[threading.Thread] = []
        baseline: list[int] = []

        def start_flood(index: int, chunks: int, _who: bytes) -> None:
            updates = sum(1 for bodies in round_.sent if len(bodies) > 2)
            if attacker and updates == 3 and index == 0:
                attacker[0].join(300)  # the last update once the flood is over: the phase stays open
            if attacker or chunks <= 2 or index != 0:
                return
            baseline.append(rss_bytes(pid))
            thread = threading.Thread(target=flood, args=(round_.wait_phase("update"),))
            thread.start()
            attacker.append(thread)
            flooding.wait(120)

        round_ = HandRound([coordinator.url], before_chunk=start_flood)
        round_id, _ = round_.run()
        attacker[0].join(300)
        peak = rss_bytes(pid)
        assert round_.check(round_.model_of(round_id)) == {0, 1, 2}

    statuses = attack["statuses"]
    assert len(statuses) == FIRST_CHUNKS
    assert set(statuses) <= {200}, "a first chunk is buffered (evicting the oldest), never refused"
    genuine = [a.status for a in round_.answers]
    assert 400 not in genuine, "no genuine chunk got a final 400"
    grown = peak - baseline[0]
    print(
        f"RSS baseline {baseline[0] / 2**20:.1f} MiB, after {FIRST_CHUNKS} first chunks "
        f"{peak / 2**20:.1f} MiB (+{grown / 2**20:.1f} MiB; budget {BUDGET / 2**20:.0f} MiB)"
    )
    assert grown < BUDGET + MARGIN


async def test_both_stores_keep_the_budget_and_evict_the_least_recently_extended(
    stores: Callable[[], Store],
) -> None:
    """The same rules in memory and in Redis (Lua): budget, eviction order, completion."""
    store = stores()
    keeper = LeaseKeeper(store, 30, "budget:1")
    assert await keeper.try_acquire()
    # room for 300 bytes of data in three chunks (each chunk is also charged its overhead)
    budget = 300 + 2 * CHUNK_OVERHEAD
    limits = ChunkLimits(max_message_bytes=1000, max_total_bytes=budget, max_groups=10, ttl_seconds=60)
    pk = bytes(32)
    genuine = ChunkGroup(Tag.UPDATE, pk, 1)
    assert (await store.put_chunk(genuine, ChunkPayload(0, 1, False, b"g" * 100), limits, 1.0)).status == (
        ChunkStatus.BUFFERED
    )
    for index in range(5):  # an attacker's first chunks: 5 x 100 bytes into the budget
        group = ChunkGroup(Tag.UPDATE, bytes([index + 1]) * 32, 7)
        await store.put_chunk(group, ChunkPayload(0, 7, False, b"a" * 100), limits, 2.0 + index)
        if index == 0:  # the genuine participant sends its next chunk right away
            await store.put_chunk(genuine, ChunkPayload(1, 1, False, b"g" * 50), limits, 2.5)
        _, size = await store.chunk_usage()
        assert size <= limits.max_total_bytes, (index, size)
    last = await store.put_chunk(genuine, ChunkPayload(2, 1, True, b"g" * 10), limits, 9.0)
    assert (last.status, last.payload) == (ChunkStatus.MISSING, b""), "evicted by the flood: say so"
    # a message that could never fit is a capacity answer (503), not a refusal
    huge = await store.put_chunk(
        ChunkGroup(Tag.UPDATE, pk, 2), ChunkPayload(0, 2, False, b"h" * 600), limits, 10
    )
    assert huge.status is ChunkStatus.FULL
    # complete, kept until released, then `done`
    fresh = ChunkGroup(Tag.UPDATE, pk, 3)
    await store.put_chunk(fresh, ChunkPayload(0, 3, False, b"ab"), limits, 11)
    done = await store.put_chunk(fresh, ChunkPayload(1, 3, True, b"cd"), limits, 12)
    assert (done.status, done.payload) == (ChunkStatus.COMPLETE, b"abcd")
    again = await store.put_chunk(fresh, ChunkPayload(1, 3, True, b"cd"), limits, 13)
    assert (again.status, again.payload) == (ChunkStatus.COMPLETE, b"abcd")
    await store.release_chunks(fresh, accepted=True)
    assert (
        await store.put_chunk(fresh, ChunkPayload(1, 3, True, b"cd"), limits, 14)
    ).status is ChunkStatus.DONE
    conflict = await store.put_chunk(
        ChunkGroup(Tag.UPDATE, pk, 4), ChunkPayload(0, 4, True, b"x"), limits, 15
    )
    assert conflict.status is ChunkStatus.COMPLETE
    clash = await store.put_chunk(ChunkGroup(Tag.UPDATE, pk, 4), ChunkPayload(0, 4, True, b"y"), limits, 16)
    assert clash.status is ChunkStatus.CONFLICT


TINY_BUDGET = 128 * 1024
TINY_MARGIN = 128 * 1024  # the LRU index and the group hashes' own keys (24 groups here)
TINY_CHUNKS = 800  # per group: a group fits the budget alone (800 x (1 + overhead) bytes)


def _tiny_groups() -> list[ChunkGroup]:
    return [ChunkGroup(Tag.UPDATE, bytes([index + 1]) * 32, 9) for index in range(24)]


async def test_one_byte_chunks_do_not_outgrow_the_budget_in_redis(tmp_path: Path) -> None:
    """Chunk ids are 16 bits: 1-byte chunks cost Redis ~100x their data. Charged at their
    overhead, 19,200 of them (24 self-made senders) keep Redis under budget + margin."""
    with redis_server(tmp_path) as redis:
        store = RedisStore(redis.url, "tiny")
        probe = aioredis.Redis.from_url(redis.url)
        try:
            keeper = LeaseKeeper(store, 30, "tiny:1")
            assert await keeper.try_acquire()
            limits = ChunkLimits(max_message_bytes=1 << 20, max_total_bytes=TINY_BUDGET, ttl_seconds=600)
            await store.put_chunk(
                ChunkGroup(Tag.SUM, bytes(32), 1), ChunkPayload(0, 1, True, b"x"), limits, 0
            )
            await store.release_chunks(ChunkGroup(Tag.SUM, bytes(32), 1), accepted=False)
            baseline = int((await probe.info("memory"))["used_memory"])
            chunks = 0
            for group in _tiny_groups():
                for chunk_id in range(TINY_CHUNKS):
                    put = await store.put_chunk(group, ChunkPayload(chunk_id, 9, False, b"a"), limits, 1.0)
                    assert put.status is ChunkStatus.BUFFERED, put
                    chunks += 1
            _, charged = await store.chunk_usage()
            grown = int((await probe.info("memory"))["used_memory"]) - baseline
        finally:
            await probe.aclose()
            await store.close()
    print(f"Redis: {chunks} one-byte chunks, charged {charged} B, used_memory +{grown} B")
    assert charged <= TINY_BUDGET
    assert grown <= TINY_BUDGET + TINY_MARGIN, f"Redis grew {grown} B for a {TINY_BUDGET} B budget"


def test_one_byte_chunks_do_not_outgrow_the_budget_in_memory() -> None:
    """The memory store's assembler: what Python allocates stays under budget + margin."""
    assembler = ChunkAssembler(max_message_bytes=1 << 20, max_total_bytes=TINY_BUDGET)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for group in _tiny_groups():
            for chunk_id in range(TINY_CHUNKS):
                put = assembler.put(group, ChunkPayload(chunk_id, 9, False, bytes([chunk_id & 255])), 1.0)
                assert put.status is ChunkStatus.BUFFERED, put
        grown = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert assembler.buffered_bytes <= TINY_BUDGET
    assert grown <= TINY_BUDGET + TINY_MARGIN, f"the assembler holds {grown} B for a {TINY_BUDGET} B budget"


async def test_a_chunk_racing_the_round_clear_leaves_nothing_behind(tmp_path: Path) -> None:
    """The Idle clear is a SCAN plus batched deletes: a chunk put between the SCAN and the
    deletes leaves its group's hash outside the index, after the byte counter was reset. That
    hash expires by itself, a later chunk of it starts afresh, and the counter never goes
    below what is really held (it went negative, and the budget with it)."""
    with redis_server(tmp_path) as redis:
        store = RedisStore(redis.url, "race")
        raw = aioredis.Redis.from_url(redis.url)
        try:
            assert await LeaseKeeper(store, 30, "race:1").try_acquire()
            limits = ChunkLimits(max_message_bytes=10_000, ttl_seconds=600)
            group = ChunkGroup(Tag.UPDATE, b"r" * 32, 5)
            await store.put_chunk(group, ChunkPayload(0, 5, False, b"x" * 500), limits, 1.0)
            # the clear's SCAN ran before this group existed; its first batch deletes these:
            await raw.delete(*(store.prefix + k for k in ("chunk_index", "chunk_bytes", "chunk_cost")))
            assert await raw.pttl(store.prefix + "chunk:" + group.name) > 0, "the orphan expires"
            last = await store.put_chunk(group, ChunkPayload(1, 5, True, b"y" * 10), limits, 2.0)
            assert last.status is ChunkStatus.MISSING, "the cleared round's chunk is not used"
            assert await store.chunk_usage() == (1, 10 + CHUNK_OVERHEAD)
            await store.release_chunks(group, accepted=False)
            assert await store.chunk_usage() == (0, 0), "nothing held, nothing counted"
        finally:
            await raw.aclose()
            await store.close()


async def test_a_flood_between_a_participants_chunks_evicts_itself(stores: Callable[[], Store]) -> None:
    """An attacker whose first chunks arrive between every two chunks of a genuine message,
    each burst more than the whole budget: pure LRU evicted the genuine message every time.
    One-chunk groups go first, so a message that has two chunks here completes."""
    store = stores()
    assert await LeaseKeeper(store, 30, "flood:1").try_acquire()
    chunk = 200 + CHUNK_OVERHEAD
    limits = ChunkLimits(max_message_bytes=10_000, max_total_bytes=8 * chunk, max_groups=100, ttl_seconds=600)
    genuine = ChunkGroup(Tag.UPDATE, bytes(32), 1)
    parts = [secrets.token_bytes(200) for _ in range(5)]
    attackers = 0
    for index, part in enumerate(parts):
        if index >= 2:  # a burst of first chunks (self-made keys) larger than the budget
            for _ in range(10):
                attackers += 1
                group = ChunkGroup(Tag.UPDATE, attackers.to_bytes(32, "big"), 9)
                put = await store.put_chunk(group, ChunkPayload(0, 9, False, b"a" * 200), limits, 1.0)
                assert put.status is ChunkStatus.BUFFERED
        put = await store.put_chunk(
            genuine, ChunkPayload(index, 1, index == len(parts) - 1, part), limits, 1.0
        )
        _, size = await store.chunk_usage()
        assert size <= limits.max_total_bytes
    assert (put.status, put.payload) == (ChunkStatus.COMPLETE, b"".join(parts)), put.status
