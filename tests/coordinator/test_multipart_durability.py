"""Multipart messages survive faults: the answer to the last chunk is the whole message's,
and its chunks stay in the store until that answer is final.

Real redis-server, a real `xaynet coordinator`, participants that post one chunk at a time and
re-post only a chunk whose answer was not 2xx (what the wheel and the mobile SDK do).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path

from tests.coordinator.hand_round import HandRound
from tests.coordinator.stores import store_clients  # noqa: F401 - the `stores` fixture
from tests.processes import CoordinatorProcess, coordinator_process, free_port, pet_config, redis_server
from xaynet.coordinator.store.base import Store
from xaynet.coordinator.store.lease import LeaseKeeper
from xaynet.core.message.assembler import ChunkGroup, ChunkLimits, ChunkStatus
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.header import Tag


def _config(port: int, redis_url: str) -> str:
    return pet_config(
        4 + 3,
        port=port,
        redis_url=redis_url,
        sum_prob=0.5,
        min_sum_count=1,
        min_update_count=3,
        min_sum2_count=1,
        times=(0, 0, 0),
        max_time=120,
    )


def test_redis_stopped_at_the_last_chunk_then_only_that_chunk_is_retried(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        port = free_port()
        with coordinator_process(tmp_path, _config(port, redis.url), port) as coordinator:
            stopped: list[bytes] = []

            def stop_redis_before_a_last_chunk(index: int, chunks: int, who: bytes) -> None:
                if not stopped and chunks > 2 and index == chunks - 1:
                    redis.stop()
                    stopped.append(who)
                    threading.Timer(3.0, redis.start).start()  # back while the chunk is retried

            round_ = HandRound([coordinator.url], before_chunk=stop_redis_before_a_last_chunk)
            round_id, _ = round_.run()
            assert round_.check(round_.model_of(round_id)) == {0, 1, 2}

    victim = [a for a in round_.answers if a.who == stopped[0] and a.chunks > 2]
    last = [a for a in victim if a.chunk == a.chunks - 1]
    assert [a.status for a in last[:1]] == [503], "the store outage is answered 503, not `buffered`"
    assert last[-1].result == "accepted", "the retried last chunk completes the whole message"
    retried = {a.chunk for a in victim if a.status == 503}
    assert retried == {victim[0].chunks - 1}, "only the last chunk had to be sent again"


def _restart(coordinator: CoordinatorProcess) -> None:
    coordinator.kill(signal.SIGKILL)
    coordinator.start()


def test_kill_9_between_chunks_and_after_the_last_chunk(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis:
        port = free_port()
        with coordinator_process(tmp_path, _config(port, redis.url), port) as coordinator:
            events: list[str] = []

            def faults(index: int, chunks: int, _who: bytes) -> None:
                updates = [bodies for bodies in round_.sent if len(bodies) > 2]
                if len(updates) == 1 and index == 2 and "between" not in events:
                    _restart(coordinator)  # chunks 0 and 1 were taken by the killed process
                    events.append("between")
                if len(updates) == 3 and index == 0 and "after" not in events:
                    # the second update was accepted, but say its answer was lost: kill -9,
                    # then the client sends its last chunk again, and then the whole message
                    _restart(coordinator)
                    events.append("after")
                    previous = updates[1]
                    who = round_.answers[-1].who
                    again = round_.post_until_answered(previous[-1], len(previous) - 1, len(previous), who)
                    assert (again.result, again.reason) == ("accepted", "already_accepted"), again
                    for i, body in enumerate(previous):
                        whole = round_.post_until_answered(body, i, len(previous), who)
                    assert (whole.result, whole.reason) == ("accepted", "already_accepted"), whole

            round_ = HandRound([coordinator.url], before_chunk=faults)
            try:
                round_id, _ = round_.run()
                included = round_.check(round_.model_of(round_id))
            except AssertionError:
                print(coordinator.logs()[-5000:])
                raise
            assert events == ["between", "after"]
            assert included == {0, 1, 2}, "every update exactly once, the re-sent one too"


async def test_only_the_accepted_message_is_answered_done(stores: Callable[[], Store]) -> None:
    """A message id is 16 bits: after a message was accepted, a different message that reuses
    its id is buffered and judged, not answered `already accepted` unseen; a whole re-send of
    the accepted message is still answered `done` on its last chunk (and leaves nothing)."""
    store = stores()
    assert await LeaseKeeper(store, 30, "done:1").try_acquire()
    group, limits = ChunkGroup(Tag.UPDATE, b"p" * 32, 7), ChunkLimits(10_000)
    await store.put_chunk(group, ChunkPayload(0, 7, False, b"first message, part 0"), limits, 1)
    complete = await store.put_chunk(group, ChunkPayload(1, 7, True, b"part 1"), limits, 2)
    assert complete.status is ChunkStatus.COMPLETE
    await store.release_chunks(group, accepted=True)
    # the whole accepted message again: its first chunk is held, its last one is `done`
    again = await store.put_chunk(group, ChunkPayload(0, 7, False, b"first message, part 0"), limits, 3)
    assert again.status is ChunkStatus.BUFFERED
    last = await store.put_chunk(group, ChunkPayload(1, 7, True, b"part 1"), limits, 4)
    assert last.status is ChunkStatus.DONE
    assert await store.chunk_usage() == (0, 0), "the re-sent chunks were dropped"
    # a different message with the same id: buffered, completed, handed on to be judged
    other = await store.put_chunk(group, ChunkPayload(0, 7, False, b"A DIFFERENT message"), limits, 5)
    assert other.status is ChunkStatus.BUFFERED
    whole = await store.put_chunk(group, ChunkPayload(1, 7, True, b", part 1"), limits, 6)
    assert (whole.status, whole.payload) == (ChunkStatus.COMPLETE, b"A DIFFERENT message, part 1")
