"""Chunk splitting sizes (WIRE.md §5) and reassembly limits, expiry and strictness."""

from __future__ import annotations

import pytest

from xaynet.core.errors import LengthError, MultipartError
from xaynet.core.message.assembler import CHUNK_OVERHEAD as OVERHEAD
from xaynet.core.message.assembler import ChunkAssembler, ChunkGroup, ChunkStatus
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE, ChunkPayload, split_payload
from xaynet.core.message.header import Tag

PK = bytes(32)
ROUND = bytes([1]) * 32


@pytest.mark.parametrize(
    ("payload_length", "max_size", "chunks", "last_data"),
    [
        (96, 224, 3, 32),
        (286, 292, 3, 86),
        (6262, 3912, 2, 2542),
        (3728, 3912, None, None),
        (3729, 3912, 2, 9),
    ],
)
def test_split_sizes_follow_the_sdk(
    payload_length: int, max_size: int, chunks: int | None, last_data: int | None
) -> None:
    result = split_payload(bytes(payload_length), max_size)
    if chunks is None:
        assert result is None
        return
    assert result is not None
    assert len(result) == chunks
    assert [c.chunk_id for c in result] == list(range(chunks))
    assert [c.last for c in result] == [False] * (chunks - 1) + [True]
    assert len({c.message_id for c in result}) == 1
    assert all(len(c.data) == max_size - 192 for c in result[:-1])
    assert len(result[-1].data) == last_data
    assert b"".join(c.data for c in result) == bytes(payload_length)


def test_default_max_message_size_is_the_rust_sdks() -> None:
    assert DEFAULT_MAX_MESSAGE_SIZE == 3912
    assert split_payload(bytes(10**6), None) is None
    with pytest.raises(LengthError):
        split_payload(bytes(1000), 193)


def _chunks(data: bytes, size: int = 3, mid: int = 7) -> list[ChunkPayload]:
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    return [ChunkPayload(i, mid, i == len(parts) - 1, p) for i, p in enumerate(parts)]


def test_out_of_order_and_duplicate_chunks_reassemble() -> None:
    assembler = ChunkAssembler(max_message_bytes=100)
    c0, c1, c2 = _chunks(b"abcdefgh")
    assert assembler.add(PK, ROUND, Tag.SUM, c2, 0) is None
    assert assembler.add(PK, ROUND, Tag.SUM, c0, 0) is None
    assert assembler.add(PK, ROUND, Tag.SUM, c0, 0) is None  # an identical retry
    done = assembler.add(PK, ROUND, Tag.SUM, c1, 0)
    assert done is not None
    assert done.payload == b"abcdefgh"
    assert (len(assembler), assembler.buffered_bytes) == (0, 0)


def test_groups_are_per_participant_and_message_id() -> None:
    assembler = ChunkAssembler(max_message_bytes=100)
    a = _chunks(b"aaaaaa", mid=1)
    b = _chunks(b"bbbbbb", mid=2)
    other = bytes([9]) * 32
    assembler.add(PK, ROUND, Tag.UPDATE, a[0], 0)
    assembler.add(other, ROUND, Tag.UPDATE, a[1], 0)  # another participant, same id: no mixing
    assembler.add(PK, ROUND, Tag.UPDATE, b[0], 0)
    assert len(assembler) == 3
    done = assembler.add(PK, ROUND, Tag.UPDATE, a[1], 0)
    assert done is not None
    assert done.payload == b"aaaaaa"


@pytest.mark.parametrize(
    ("first", "second", "match"),
    [
        (ChunkPayload(0, 1, False, b"abc"), ChunkPayload(0, 1, False, b"xyz"), "different data"),
        (ChunkPayload(1, 1, True, b"abc"), ChunkPayload(2, 1, False, b"xyz"), "after the last"),
        (ChunkPayload(2, 1, False, b"abc"), ChunkPayload(1, 1, True, b"xyz"), "higher id"),
    ],
)
def test_inconsistent_chunks_are_refused_without_changing_state(
    first: ChunkPayload, second: ChunkPayload, match: str
) -> None:
    assembler = ChunkAssembler(max_message_bytes=100)
    assembler.add(PK, ROUND, Tag.SUM, first, 0)
    before = (len(assembler), assembler.buffered_bytes)
    with pytest.raises(MultipartError, match=match):
        assembler.add(PK, ROUND, Tag.SUM, second, 0)
    assert (len(assembler), assembler.buffered_bytes) == before


def test_a_chunk_with_another_tag_belongs_to_another_message() -> None:
    assembler = ChunkAssembler(max_message_bytes=100)
    c0, c1, c2 = _chunks(b"abcdefgh")
    assembler.add(PK, ROUND, Tag.SUM, c0, 0)
    assert assembler.add(PK, ROUND, Tag.UPDATE, c1, 0) is None  # not mixed into the sum message
    assert len(assembler) == 2
    assert assembler.add(PK, ROUND, Tag.SUM, c1, 0) is None
    done = assembler.add(PK, ROUND, Tag.SUM, c2, 0)
    assert done is not None and done.payload == b"abcdefgh"


def test_limits_bound_memory_by_evicting_one_chunk_messages_first_then_the_oldest() -> None:
    # every chunk is charged its data plus CHUNK_OVERHEAD: room for 8 data bytes in 3 chunks
    assembler = ChunkAssembler(max_message_bytes=5, max_total_bytes=8 + 3 * OVERHEAD, max_groups=2)
    first, second, _ = _chunks(b"abcdefgh")
    assembler.add(PK, ROUND, Tag.SUM, first, 0)
    with pytest.raises(MultipartError, match="exceeds 5 bytes"):
        assembler.add(PK, ROUND, Tag.SUM, second, 0)
    assembler.clear()
    one, two, three = (ChunkGroup(Tag.SUM, PK, i) for i in (1, 2, 3))
    assembler.put(one, ChunkPayload(0, 1, False, b"abcd"), 0)
    assembler.put(two, ChunkPayload(0, 2, False, b"abcd"), 1)
    assembler.put(one, ChunkPayload(1, 1, False, b"a"), 2)  # 9 bytes > 8: evicts `two`, not `one`
    assert (len(assembler), assembler.buffered_bytes) == (1, 5 + 2 * OVERHEAD)
    put = assembler.put(three, ChunkPayload(0, 3, False, b"abc"), 3)  # fits beside `one`
    assert (put.status, put.evicted) == (ChunkStatus.BUFFERED, 0)
    # a third group: `one` is the oldest, but `three` holds a single chunk (what a flood of
    # first chunks from self-made keys looks like), so `three` goes
    put = assembler.put(two, ChunkPayload(0, 2, False, b"a"), 4)
    assert (put.status, put.evicted) == (ChunkStatus.BUFFERED, 1)
    assert (len(assembler), assembler.buffered_bytes) == (2, 6 + 3 * OVERHEAD)
    put = assembler.put(two, ChunkPayload(1, 2, False, b"b"), 5)  # no other one-chunk group:
    assert (put.status, put.evicted) == (ChunkStatus.BUFFERED, 1)  # the oldest, `one`, goes
    assert assembler.put(one, ChunkPayload(2, 1, True, b"x"), 6).status is ChunkStatus.MISSING


def test_a_message_larger_than_the_whole_budget_is_a_capacity_answer_not_an_error() -> None:
    assembler = ChunkAssembler(max_message_bytes=100, max_total_bytes=4)
    put = assembler.put(ChunkGroup(Tag.SUM, PK, 1), ChunkPayload(0, 1, False, b"abcde"), 0)
    assert put.status is ChunkStatus.FULL
    assert len(assembler) == 0


def test_a_complete_message_stays_until_released_and_an_accepted_one_answers_done() -> None:
    assembler = ChunkAssembler(max_message_bytes=100)
    group = ChunkGroup(Tag.UPDATE, PK, 7)
    c0, c1, c2 = _chunks(b"abcdefgh")
    for chunk in (c0, c1):
        assert assembler.put(group, chunk, 0).status is ChunkStatus.BUFFERED
    assert assembler.put(group, c2, 0).payload == b"abcdefgh"
    again = assembler.put(group, c2, 1)  # the retry of the last chunk after a 503
    assert (again.status, again.payload) == (ChunkStatus.COMPLETE, b"abcdefgh")
    assembler.release(group, accepted=True)
    assert (len(assembler), assembler.buffered_bytes) == (0, 0)
    assert assembler.put(group, c2, 2).status is ChunkStatus.DONE


def test_a_last_chunk_whose_earlier_chunks_are_gone_says_so() -> None:
    assembler = ChunkAssembler(max_message_bytes=100)
    _, _, c2 = _chunks(b"abcdefgh")
    put = assembler.put(ChunkGroup(Tag.UPDATE, PK, 7), c2, 0)
    assert put.status is ChunkStatus.MISSING
    assert "[0, 1]" in put.detail


def test_a_client_that_never_finishes_is_expired() -> None:
    assembler = ChunkAssembler(max_message_bytes=100, ttl_seconds=60)
    assembler.add(PK, ROUND, Tag.SUM, ChunkPayload(0, 1, False, b"abc"), now=0)
    assembler.add(PK, ROUND, Tag.SUM, ChunkPayload(0, 2, False, b"abc"), now=50)
    assert assembler.expire(now=61) == 1
    assert (len(assembler), assembler.buffered_bytes) == (1, 3 + OVERHEAD)
    assert assembler.clear() == 1
    assert assembler.buffered_bytes == 0
