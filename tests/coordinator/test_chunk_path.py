"""The cheap chunk path (issue 13): what a participant sees of it, and what it must not change.

Chunks are opened on the event loop, large bodies in the thread pool: both refuse a bad body
with the same answer and count nothing. A buffered chunk gets one constant answer that still
says `buffered`. Large bodies are read by the middleware (with and without a Content-Length).
The SDK's client sends a message's chunks over one keep-alive connection. The assembler's
TTL sweep looks only at the oldest groups, and still drops the expired ones. And the
coordinator's allocator setting keeps a message's buffers from page-faulting in again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from tests.pet_client import PetClient, ephemeral, keys_for, sealed
from tests.processes import (
    CoordinatorProcess,
    coordinator_process,
    free_port,
    http_get,
    http_post,
    pet_config,
    wait_until,
)
from xaynet.coordinator.allocator import trim_threshold
from xaynet.coordinator.pipeline import ALONE_OPEN_BYTES, INLINE_OPEN_BYTES
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import OPENSSL_VERIFY_BYTES, EncryptKeyPair, SigningKeyPair, seal
from xaynet.core.message.assembler import ChunkAssembler, ChunkGroup, ChunkStatus
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE, ChunkPayload, split_payload
from xaynet.core.message.envelope import sign_message
from xaynet.core.message.header import Tag
from xaynet.sdk.client import CoordinatorClient
from xaynet.sdk.tasks import Task, compose_sum, compose_update

LENGTH = 40_000  # a whole update (~240 KB: thread pool, OpenSSL verification), its chunks on the loop
UPDATES = 3


@contextlib.contextmanager
def _update_phase(tmp_path: Path) -> Iterator[tuple[CoordinatorProcess, PetClient, RoundParameters]]:
    """A coordinator held in its Update phase (one sum participant, waiting for 3 updates)."""
    port = free_port()
    config = pet_config(
        LENGTH,
        port=port,
        sum_prob=0.5,
        update_prob=1.0,
        min_sum_count=1,
        min_update_count=UPDATES,
        times=(0, 0, 0),
        max_time=300,
        max_counts=(1, UPDATES, 1),
    )
    with coordinator_process(tmp_path, config, port) as coordinator:
        client = PetClient(coordinator.url)
        wait_until(lambda: coordinator.status()["phase"] == "sum", 30, "the sum phase")
        params = client.params()
        summer = keys_for(params, Task.SUM)
        assert (
            client.post(sealed(summer, params, compose_sum(summer, params, ephemeral()))).result == "accepted"
        )
        wait_until(lambda: coordinator.status()["phase"] == "update", 30, "the update phase")
        yield coordinator, client, params


def _update(params: RoundParameters, client: PetClient) -> tuple[SigningKeyPair, bytes]:
    """An eligible participant and the plaintext payload of its update."""
    keys = keys_for(params, Task.UPDATE)
    sums = client.sums()
    assert sums is not None
    weights = np.random.default_rng(len(keys.public)).uniform(-1, 1, LENGTH).astype(np.float32)
    return keys, compose_update(keys, params, sums, weights).to_bytes()


def _accepted_updates(coordinator: CoordinatorProcess) -> int:
    return int(coordinator.status()["counts"]["update"]["accepted"])


def _metric(url: str, name: str, labels: str) -> float:
    code, body = http_get(url + "/metrics")
    assert code == 200
    for line in body.decode().splitlines():
        unlabelled = not labels and line.split(" ", 1)[0] == name
        if unlabelled or (line.startswith(f"{name}{{") and all(p in line for p in labels.split(","))):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _bad_bodies(
    keys: SigningKeyPair, params: RoundParameters, payload: bytes, multipart: bool
) -> dict[str, bytes]:
    """The same four faults, for a whole update or for one chunk of it."""
    stranger = EncryptKeyPair.generate()
    plain = sign_message(keys, params.pk, Tag.UPDATE, payload, multipart)
    forged = bytearray(plain)
    forged[5] ^= 0x40  # a signature bit
    body = bytearray(seal(params.pk, plain))
    body[-1] ^= 0x01  # the box's last byte: its MAC fails
    return {
        "decrypt": bytes(body),
        "decrypt (another key)": seal(stranger.public, plain),
        "bad_signature": seal(params.pk, bytes(forged)),
        "wrong_coordinator_key": seal(
            params.pk, sign_message(keys, stranger.public, Tag.UPDATE, payload, multipart)
        ),
    }


def encode_messages_of(keys: SigningKeyPair, params: RoundParameters, payload: bytes) -> list[bytes]:
    """The signed chunk plaintexts of `payload`, as our SDK cuts them (3,912-byte bodies)."""
    chunks = split_payload(payload, DEFAULT_MAX_MESSAGE_SIZE)
    assert chunks is not None
    return [sign_message(keys, params.pk, Tag.UPDATE, c.to_bytes(), multipart=True) for c in chunks]


@contextlib.contextmanager
def _another_upload_in_progress(coordinator: CoordinatorProcess) -> Iterator[None]:
    """A POST /message whose body is still arriving (a slow phone): while it lasts, large
    bodies are opened in the thread pool."""
    with socket.create_connection(("127.0.0.1", coordinator.port), timeout=10) as slow:
        slow.sendall(b"POST /message HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + bytes(10))
        wait_until(lambda: _metric(coordinator.url, "xaynet_messages_in_progress", "") == 1, 30, "the upload")
        yield
    wait_until(lambda: _metric(coordinator.url, "xaynet_messages_in_progress", "") == 0, 30, "its end")


def _opened(coordinator: CoordinatorProcess, where: str) -> float:
    return _metric(coordinator.url, "xaynet_message_bodies_opened_total", f'where="{where}"')


def test_a_large_body_is_opened_on_the_loop_alone_and_in_the_pool_beside_others(tmp_path: Path) -> None:
    with _update_phase(tmp_path) as (coordinator, client, params):

        def opened() -> tuple[float, float]:
            return _opened(coordinator, "event_loop"), _opened(coordinator, "thread_pool")

        bodies = []
        for _ in range(2):
            keys, payload = _update(params, client)
            bodies.append(seal(params.pk, sign_message(keys, params.pk, Tag.UPDATE, payload)))
        assert all(INLINE_OPEN_BYTES < len(b) <= ALONE_OPEN_BYTES for b in bodies)
        loop, pool = opened()
        with _another_upload_in_progress(coordinator):
            assert client.post(bodies[0]).result == "accepted"
        assert opened() == (loop, pool + 1), "beside another upload: the thread pool"
        assert client.post(bodies[1]).result == "accepted"
        assert opened() == (loop + 1, pool + 1), "alone: the event loop"
        assert _accepted_updates(coordinator) == 2


def test_loop_and_thread_refuse_bad_bodies_alike_and_count_nothing(tmp_path: Path) -> None:
    with _update_phase(tmp_path) as (coordinator, client, params), _another_upload_in_progress(coordinator):
        keys, payload = _update(params, client)
        chunks = split_payload(payload, DEFAULT_MAX_MESSAGE_SIZE)
        assert chunks is not None
        whole = _bad_bodies(keys, params, payload, multipart=False)
        chunk = _bad_bodies(keys, params, chunks[0].to_bytes(), multipart=True)
        assert all(len(b) > INLINE_OPEN_BYTES for b in whole.values()), "whole bodies take the thread"
        assert all(len(b) > OPENSSL_VERIFY_BYTES + 48 for b in whole.values()), "and OpenSSL verifies them"
        assert all(len(b) <= INLINE_OPEN_BYTES for b in chunk.values()), "chunks are opened on the loop"
        for fault in whole:
            big, small = client.post(whole[fault]), client.post(chunk[fault])
            expected = (400, "invalid", fault.split(" ")[0])
            assert (big.status, big.result, big.reason) == expected, (fault, big)
            assert (small.status, small.result, small.reason) == expected, (fault, small)
            assert small.body["detail"] == big.body["detail"], "the same words, whichever path"
        assert _accepted_updates(coordinator) == 0
        assert _opened(coordinator, "thread_pool") == len(whole), (
            "beside an upload, whole bodies take the pool"
        )
        usage = _metric(coordinator.url, "xaynet_messages_total", 'outcome="buffered"')
        assert usage == 0, "no refused chunk was buffered"
        # the genuine message still goes through, chunked (loop) and whole (thread)
        for body in [seal(params.pk, p) for p in encode_messages_of(keys, params, payload)]:
            last = client.post(body)
        assert (last.status, last.result) == (200, "accepted")
        other, other_payload = _update(params, client)
        answer = client.post(seal(params.pk, sign_message(other, params.pk, Tag.UPDATE, other_payload)))
        assert (answer.status, answer.result) == (200, "accepted")
        assert _accepted_updates(coordinator) == 2


def test_every_buffered_chunk_gets_the_same_small_answer(tmp_path: Path) -> None:
    with _update_phase(tmp_path) as (coordinator, client, params):
        keys, payload = _update(params, client)
        answers = [
            http_post(coordinator.url + "/message", seal(params.pk, p))
            for p in encode_messages_of(keys, params, payload)
        ]
        *buffered, (last_status, last_headers, _) = answers
        assert len(buffered) > 20
        for status, headers, body in buffered:
            lowered = {k.lower(): v for k, v in headers.items()}
            assert (status, lowered["x-xaynet-result"], lowered["x-xaynet-reason"]) == (
                200,
                "buffered",
                "chunk_buffered",
            )
            assert lowered["content-type"].startswith("application/json")
            assert json.loads(body)["result"] == "buffered"
        assert len({body for _, _, body in buffered}) == 1, "one constant body for every buffered chunk"
        assert (last_status, {k.lower(): v for k, v in last_headers.items()}["x-xaynet-result"]) == (
            200,
            "accepted",
        )
        assert _metric(coordinator.url, "xaynet_messages_total", 'outcome="buffered"') == len(buffered)
        assert _accepted_updates(coordinator) == 1


async def _post_streamed(url: str, body: bytes) -> tuple[int, str]:
    """POST with chunked transfer encoding (no Content-Length), in 16 KiB pieces."""

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 16 * 1024):
            yield body[start : start + 16 * 1024]

    async with aiohttp.ClientSession() as session, session.post(url + "/message", data=pieces()) as response:
        await response.read()
        return response.status, response.headers.get("X-Xaynet-Result", "")


def test_large_bodies_with_and_without_a_content_length_are_read_whole(tmp_path: Path) -> None:
    with _update_phase(tmp_path) as (coordinator, client, params):
        keys, payload = _update(params, client)
        with_length = seal(params.pk, sign_message(keys, params.pk, Tag.UPDATE, payload))
        answer = client.post(with_length)
        assert (answer.status, answer.result) == (200, "accepted")
        assert client.post(with_length).reason == "already_accepted", "the same message, counted once"
        other, other_payload = _update(params, client)
        streamed = seal(params.pk, sign_message(other, params.pk, Tag.UPDATE, other_payload))
        assert asyncio.run(_post_streamed(coordinator.url, streamed)) == (200, "accepted")
        assert _accepted_updates(coordinator) == 2


async def test_the_sdk_client_sends_a_message_s_chunks_over_one_connection() -> None:
    peers: list[object] = []

    async def record(request: web.Request) -> web.Response:
        await request.read()
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.Response(headers={"X-Xaynet-Result": "buffered"})

    app = web.Application()
    app.router.add_post("/message", record)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        keys, coordinator = SigningKeyPair.generate(), EncryptKeyPair.generate()
        chunks = split_payload(bytes(100_000), DEFAULT_MAX_MESSAGE_SIZE)
        assert chunks is not None
        async with aiohttp.ClientSession() as session:
            client = CoordinatorClient(f"http://127.0.0.1:{port}", session)
            for chunk in chunks:
                plain = sign_message(keys, coordinator.public, Tag.UPDATE, chunk.to_bytes(), multipart=True)
                assert (await client.post_message(seal(coordinator.public, plain))).result == "buffered"
    finally:
        await runner.cleanup()
    assert len(peers) == len(chunks) > 20
    assert len(set(peers)) == 1, "every chunk over the same keep-alive connection"


def test_the_ttl_sweep_drops_expired_groups_and_keeps_refreshed_ones() -> None:
    assembler = ChunkAssembler(max_message_bytes=1000, ttl_seconds=60)
    old, refreshed, new = (ChunkGroup(Tag.UPDATE, bytes([i]) * 32, i) for i in range(3))
    assert assembler.put(old, ChunkPayload(0, 0, False, b"a"), now=0).status is ChunkStatus.BUFFERED
    assert assembler.put(refreshed, ChunkPayload(0, 1, False, b"b"), now=10).status is ChunkStatus.BUFFERED
    assert assembler.put(refreshed, ChunkPayload(1, 1, False, b"c"), now=50).status is ChunkStatus.BUFFERED
    put = assembler.put(new, ChunkPayload(0, 2, False, b"d"), now=100)  # `old` is 100 s old, `refreshed` 50
    assert (put.status, put.evicted, len(assembler)) == (ChunkStatus.BUFFERED, 1, 2)
    done = assembler.put(old, ChunkPayload(1, 0, True, b"e"), now=100)
    assert done.status is ChunkStatus.MISSING, "the expired group's first chunk is gone"
    last = assembler.put(refreshed, ChunkPayload(2, 1, True, b"f"), now=101)
    assert (last.status, last.payload) == (ChunkStatus.COMPLETE, b"bcf")


_FAULTS = """
import ctypes, os, resource, sys
from xaynet.coordinator.allocator import keep_freed_buffers
body = {body}
if sys.argv[1] == "tuned":
    assert keep_freed_buffers(body)
def message():  # what one large message allocates: reads, the body, the plaintext, a parse
    reads = [os.urandom(body // 4) for _ in range(4)]
    whole = b"".join(reads)
    plain = whole[48:]
    parsed = bytearray(plain)
    del reads, whole, plain, parsed
for _ in range(5):
    message()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    message()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_message_buffers_stay_mapped_between_messages() -> None:
    body = 3_000_000
    assert trim_threshold(body) >= 4 * body, "a few messages' buffers fit under the trim threshold"
    script = textwrap.dedent(_FAULTS.format(body=body))

    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, check=True)
        return int(run.stdout.strip())

    pages = 4 * body // 4096  # what one message touches
    assert faults("default") > 10 * pages, "glibc's defaults give the memory back after each message"
    assert faults("tuned") < pages, "tuned: the freed buffers are reused, not faulted in again"


def test_a_message_accepted_in_chunks_and_resent_whole_is_accepted_again(tmp_path: Path) -> None:
    """The stored identity of a multipart message is its payload's SHA-256 — also what builds
    before the signature digest stored for single messages (a round resumed across an upgrade).
    The same payload re-sent as one message is the same message: `already_accepted`, once."""
    with _update_phase(tmp_path) as (coordinator, client, params):
        keys, payload = _update(params, client)
        for chunk in encode_messages_of(keys, params, payload):
            last = client.post(seal(params.pk, chunk))
        assert (last.status, last.result) == (200, "accepted")
        whole = seal(params.pk, sign_message(keys, params.pk, Tag.UPDATE, payload))
        again = client.post(whole)
        assert (again.status, again.result, again.reason) == (200, "accepted", "already_accepted")
        sums = client.sums()
        assert sums is not None
        weights = np.zeros(LENGTH, dtype=np.float32)
        other_payload = compose_update(keys, params, sums, weights).to_bytes()  # same sender, new update
        refused = client.post(seal(params.pk, sign_message(keys, params.pk, Tag.UPDATE, other_payload)))
        assert (refused.result, refused.reason) == ("rejected", "duplicate_update")
        assert _accepted_updates(coordinator) == 1
