"""The multipart buffer is bounded by one global byte budget: an attacker who floods the
coordinator with first chunks from self-made keys (they pass every check a chunk can have)
only evicts the oldest incomplete messages, genuine participants still complete the round,
and the coordinator's memory stays under baseline + budget + a stated margin.

Real `xaynet coordinator` process (memory store: the chunks live in its RSS), real HTTP.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from tests.coordinator.hand_round import HandRound
from tests.coordinator.stores import store_clients  # noqa: F401 - the `stores` fixture
from tests.processes import coordinator_process, free_port, http_post, pet_config
from xaynet.coordinator.store.base import Store
from xaynet.coordinator.store.lease import LeaseKeeper
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import SigningKeyPair, seal
from xaynet.core.message.assembler import ChunkGroup, ChunkLimits, ChunkStatus
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
    limits = ChunkLimits(max_message_bytes=1000, max_total_bytes=300, max_groups=10, ttl_seconds=60)
    pk = bytes(32)
    genuine = ChunkGroup(Tag.UPDATE, pk, 1)
    assert (await store.put_chunk(genuine, ChunkPayload(0, 1, False, b"g" * 100), limits, 1.0)).status == (
        ChunkStatus.BUFFERED
    )
    for index in range(5):  # an attacker's first chunks: 5 x 100 bytes into a 300-byte budget
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
        ChunkGroup(Tag.UPDATE, pk, 2), ChunkPayload(0, 2, False, b"h" * 400), limits, 10
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
