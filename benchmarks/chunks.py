"""Coordinator cost per chunk of a multipart update, and per unchunked update, against floors.

One run per store (memory, then Redis) and model length: a real `xaynet coordinator` process
is held in its Update phase while this process POSTs update messages to it over keep-alive
connections (a few at a time; each message's chunks in order over one connection, like a
participant). Chunked messages are cut into 3,912-byte bodies by our SDK's chunker (the
mobile SDK's default). The cost is the coordinator's CPU time over the requests (its process
CPU clock, = utime + stime: fair on a shared machine); wall time is printed too.

Floors, measured in the same run and interleaved with the timed batches:
  (a) libsodium (PyNaCl): sealed-box open + Ed25519 verify of the same plaintexts, single
      thread (this process's CPU time);
  (b) a bare aiohttp server process (`benchmarks/bare_server.py`) that reads each POST body
      and answers 200, sent the same chunk bodies the same way (its CPU time per request).
Per chunk: ours / ((a) + (b)), target ≤ 1.5×. Per unchunked update: ours / ((a) + one numpy
add of the update's length), target ≤ 1.3×. The batches are repeated (`--repeats`, interleaved
with the floors'); the target is checked on the median of the per-repeat ratios (each batch of
ours against the floor batches run beside it: on a shared machine the cores' speed drifts
within a run), printed with its range and, for information, the ratio of each side's fastest
repeat.

Both servers run on the same event loop (`--loop`: asyncio's own, the coordinator's default,
and/or uvloop, `XAYNET_EVENT_LOOP=uvloop`, where it is installed); the loop each process
really runs on is read back from it and printed, and so is the coordinator's CPU per chunk and
per update split between its event loop and its other threads (the opening pool), with the
part spent in the kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import importlib.util
import itertools
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import aiohttp
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nacl.bindings import crypto_box_seal_open, crypto_sign_open
from rich.console import Console
from rich.table import Table

from benchmarks._timing import machine
from benchmarks.ingest import update_phase_config
from tests.pet_client import PetClient, ephemeral, keys_for, sealed
from tests.processes import coordinator_process, free_port, http_get, redis_server, wait_until
from xaynet.coordinator import allocator, event_loop
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, seal
from xaynet.core.eligibility import SUM_TASK, UPDATE_TASK, task_signature
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE
from xaynet.core.message.envelope import encode_messages
from xaynet.core.message.payloads import UpdatePayload
from xaynet.sdk.client import CoordinatorClient
from xaynet.sdk.tasks import Task, compose_sum, compose_update

CHUNK_SIZE = DEFAULT_MAX_MESSAGE_SIZE  # 3,912 bytes per sealed body
CHUNK_TARGET, CHUNKED_TARGET = 1.5, 1.3
MAX_UPDATES = 1000  # per coordinator: M3's limit
ROOT = Path(__file__).resolve().parent.parent


_LIBC = ctypes.CDLL(None, use_errno=True)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process (all its threads, also ended ones: utime + stime), in seconds.

    Read from the process's CPU-time clock (`clock_getcpuclockid`, nanoseconds) rather than
    /proc/<pid>/stat, whose 10 ms ticks would be 1/7 of a per-request figure over 100 requests.
    """
    clock = ctypes.c_int()
    if _LIBC.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
        raise OSError(ctypes.get_errno(), f"no CPU clock for process {pid}")
    return time.clock_gettime(clock.value)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's live threads, from each thread's schedstat (nanoseconds):
    its main thread (the event loop) and the others (the coordinator's opening pool; Python
    3.11 does not name threads for the OS, so they are not told apart)."""
    threads: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            nanoseconds = int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        group = "event loop" if tid == str(pid) else "other threads"
        threads[group] = threads.get(group, 0.0) + nanoseconds / 1e9
    # the part spent in the kernel (stime, clock ticks): socket reads and writes, and on
    # loopback also the TCP delivery of what the write sends (attributed to the writer)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    threads["of which kernel"] = int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return threads


@dataclass
class Message:
    """One update as POST bodies: to the coordinator's round key, and to the floor's key."""

    bodies: list[bytes]
    floor_bodies: list[bytes]


@dataclass
class Tally:
    cpu: float = 0.0
    wall: float = 0.0
    requests: int = 0
    messages: int = 0
    lost: int = 0  # messages whose last answer was not `accepted` (chunks: others not `buffered`)
    threads: dict[str, float] = field(default_factory=dict)  # CPU by thread group (`thread_cpu`)
    batches: list[tuple[float, int, int]] = field(default_factory=list)  # (cpu, requests, messages)

    def add(  # noqa: PLR0917 - one batch's figures, in the order they are measured
        self,
        cpu: float,
        wall: float,
        requests: int,
        messages: int,
        lost: int = 0,
        threads: dict[str, float] | None = None,
    ) -> None:
        for group, seconds in (threads or {}).items():
            self.threads[group] = self.threads.get(group, 0.0) + seconds
        self.batches.append((cpu, requests, messages))
        self.cpu += cpu
        self.wall += wall
        self.requests += requests
        self.messages += messages
        self.lost += lost


@dataclass
class Probes:
    latencies: list[float] = field(default_factory=list)  # seconds, answered 200
    failures: list[str] = field(default_factory=list)  # what a probe got instead

    def summary(self) -> str:
        ordered = sorted(self.latencies)
        if not ordered:
            return f"no answer ({len(self.failures)} failed: {self.failures[:3]})"
        # a 99th percentile of fewer than 100 probes would be the maximum under another name
        p99 = ordered[math.ceil(len(ordered) * 0.99) - 1] if len(ordered) >= 100 else None
        failed = f", {len(self.failures)} failed ({self.failures[:3]})" if self.failures else ", none failed"
        p99_text = f"p99 {p99 * 1e3:.1f} ms, " if p99 is not None else ""
        return (
            f"{len(ordered)} answered: p50 {ordered[len(ordered) // 2] * 1e3:.1f} ms, {p99_text}"
            f"max {ordered[-1] * 1e3:.1f} ms{failed}"
        )


@dataclass
class Result:
    store: str
    length: int
    chunks_per_message: int
    loops: str  # the event loops the coordinator and the bare server ran on, as read from them
    chunked: Tally = field(default_factory=Tally)  # the coordinator, chunked messages
    bare: Tally = field(default_factory=Tally)  # the bare aiohttp server, the same chunk bodies
    open_chunks: Tally = field(default_factory=Tally)  # floor (a) for the chunks
    unchunked: Tally = field(default_factory=Tally)  # the coordinator, one body per update
    open_unchunked: Tally = field(default_factory=Tally)  # open + verify + numpy add per update
    # The same with OpenSSL's Ed25519 verification (what the coordinator uses for large bodies):
    # reported beside the libsodium floor, so a faster library is not mistaken for less work.
    openssl_unchunked: Tally = field(default_factory=Tally)
    bare_unchunked: Tally = field(default_factory=Tally)  # the bare server, the same whole bodies
    healthz: Probes = field(default_factory=Probes)  # `--probe-healthz`
    redis_cpu: float = 0.0  # redis-server's CPU over the chunked batches
    # the participant's side: this process's CPU per chunk POST to the bare server, through our
    # SDK's client and through a bare aiohttp session (its floor)
    client_sdk: Tally = field(default_factory=Tally)
    client_raw: Tally = field(default_factory=Tally)


async def _client_posts(url: str, bodies: list[bytes]) -> tuple[float, float]:
    """CPU seconds of this process to POST `bodies` one after another (as a participant sends
    its chunks) through our SDK's `CoordinatorClient`, then through a bare aiohttp session."""
    async with aiohttp.ClientSession() as session:
        client = CoordinatorClient(url, session)
        started = time.process_time()
        for body in bodies:
            await client.post_message(body)
        sdk = time.process_time() - started
        started = time.process_time()
        for body in bodies:
            async with session.post(f"{url}/message", data=body) as response:
                await response.read()
        return sdk, time.process_time() - started


async def _post(url: str, messages: list[Message], concurrency: int) -> tuple[float, list[list[str]]]:
    """POST every message's bodies in order, `concurrency` messages at a time (keep-alive)."""
    answers: list[list[str]] = [[] for _ in messages]
    pending = iter(range(len(messages)))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def sender() -> None:
            for index in pending:
                for body in messages[index].bodies:
                    async with session.post(f"{url}/message", data=body) as response:
                        await response.read()
                        answers[index].append(response.headers.get("X-Xaynet-Result", str(response.status)))

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return time.perf_counter() - started, answers


def _timed_post(
    pid: int, url: str, messages: list[Message], concurrency: int
) -> tuple[float, float, list[list[str]], dict[str, float]]:
    """(CPU seconds of the process, wall seconds, the answers, CPU seconds by thread group)."""
    before, threads_before = cpu_seconds(pid), thread_cpu(pid)
    wall, answers = asyncio.run(_post(url, messages, concurrency))
    threads = {group: cpu - threads_before.get(group, 0.0) for group, cpu in thread_cpu(pid).items()}
    return cpu_seconds(pid) - before, wall, answers, threads


def _lost(answers: list[list[str]]) -> int:
    """Messages not accepted exactly as a participant expects: earlier chunks buffered, last accepted."""
    return sum(1 for each in answers if each[-1] != "accepted" or any(a != "buffered" for a in each[:-1]))


def _open_verify(
    messages: list[Message], keys: EncryptKeyPair, length: int | None, openssl: bool = False
) -> float:
    """Floor (a): CPU seconds to open and verify every floor body (and add a model, if `length`).

    With `openssl`, the signature is verified by OpenSSL (`cryptography`) instead of libsodium."""
    accumulator = np.zeros(length or 1, dtype=np.uint64)
    addend = np.ones(length or 1, dtype=np.uint64)
    started = time.thread_time()
    for message in messages:
        for body in message.floor_bodies:
            plain = crypto_box_seal_open(body, keys.public, keys.secret)
            if openssl:
                Ed25519PublicKey.from_public_bytes(plain[64:96]).verify(plain[:64], memoryview(plain)[64:])
            else:
                crypto_sign_open(plain, plain[64:96])
        if length:
            np.add(accumulator, addend, out=accumulator)
    return time.thread_time() - started


def _loop_env(loop: str) -> dict[str, str]:
    return {event_loop.ENV: loop}


def coordinator_loop(pid: int) -> str:
    """The loop a coordinator process runs on: uvloop is imported only when it is used."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "uvloop" if "/uvloop/" in maps else "asyncio"


def bare_loop(url: str) -> str:
    status, body = http_get(url + "/loop", 5)
    assert status == 200, f"the bare server answered {status} to GET /loop"
    return "uvloop" if body.decode().startswith("uvloop") else "asyncio"


@contextlib.contextmanager
def _bare_server(max_body: int, loop: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bare_server", str(port), str(max_body)],
        cwd=ROOT,
        env={**os.environ, **_loop_env(loop)},
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                return http_get(url + "/message", 1)[0] == 405
            except OSError:
                return False

        wait_until(answers, 30, "the bare aiohttp server")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(10)


def _prepare(
    template: UpdatePayload,
    params: RoundParameters,
    count: int,
    chunk_size: int | None,
    floor_keys: EncryptKeyPair,
) -> list[Message]:
    """`count` updates of distinct participants (one masked model, re-signed: masking is not timed)."""
    messages = []
    for _ in range(count):
        keys = keys_for(params, Task.UPDATE)
        payload = dataclasses.replace(
            template,
            sum_signature=task_signature(keys, params.seed, SUM_TASK),
            update_signature=task_signature(keys, params.seed, UPDATE_TASK),
        )
        plains = encode_messages(keys, params.pk, payload, chunk_size)
        messages.append(
            Message(
                [seal(params.pk, plain) for plain in plains],
                [seal(floor_keys.public, plain) for plain in plains],
            )
        )
    return messages


@dataclass(frozen=True)
class Plan:
    store: str
    loop: str  # "uvloop" or "asyncio", for the coordinator and the bare server alike
    length: int
    chunked: int  # chunked updates
    whole: int  # unchunked updates
    summers: int
    concurrency: int
    repeats: int
    profile: Path | None = None  # py-spy's raw (collapsed) stacks of the coordinator, per kind
    probe: bool = False  # poll /healthz during the whole-update batches (`--probe-healthz`)


@contextlib.contextmanager
def _py_spy(pid: int, output: Path | None) -> Iterator[None]:
    """Sample the coordinator with py-spy while the block runs (collapsed stacks, appended)."""
    if output is None:
        yield
        return
    part = output.with_suffix(f".{time.monotonic_ns()}.txt")
    command = ["py-spy", "record", "--pid", str(pid), "--rate", "500", "--threads"]
    # C frames too (libsodium, uvloop, aiohttp's parser); that needs pausing the process to sample
    command.append("--native" if os.environ.get("XAYNET_BENCH_NATIVE") else "--nonblocking")
    process = subprocess.Popen(
        [*command, "--format", "raw", "--output", str(part)], stdout=subprocess.DEVNULL
    )
    time.sleep(1)  # py-spy attaches (not a synchronisation of the measured work: it only profiles)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
        if part.exists():
            with output.open("a") as collected:
                collected.write(part.read_text())
            part.unlink()


@contextlib.contextmanager
def _healthz_probe(url: str, enabled: bool, probes: Probes) -> Iterator[None]:
    """GET /healthz every 20 ms from a process of its own (not this one: its GIL is busy
    sending the load) while the block runs. What a liveness probe sees while updates are opened
    (on the loop or in the pool). The probes' own CPU is counted in the coordinator's, so this
    is off by default."""
    if not enabled:
        yield
        return
    context = multiprocessing.get_context("spawn")  # this process has threads: no fork
    stop = context.Event()
    receiving, sending = context.Pipe(duplex=False)
    process = context.Process(target=_probe, args=(url, stop, sending), daemon=True)
    process.start()
    sending.close()  # the child's copy only: if it dies, the pipe reports the end at once
    try:
        yield
    finally:
        stop.set()
        try:
            latencies, failures = receiving.recv() if receiving.poll(60) else ([], ["no report"])
        except EOFError:
            latencies, failures = [], [f"the probe process died (exit code {process.exitcode})"]
        process.join(10)
        probes.latencies += latencies
        probes.failures += failures


def _probe(url: str, stop: EventType, report: Connection) -> None:
    latencies: list[float] = []
    failures: list[str] = []
    while True:  # at least one probe, however short the block
        started = time.perf_counter()
        try:
            status, _ = http_get(f"{url}/healthz", timeout=30)
        except Exception as error:
            failures.append(f"{type(error).__name__}: {error}")
        else:
            if status == 200:
                latencies.append(time.perf_counter() - started)
            else:
                failures.append(f"HTTP {status}")
        if stop.wait(0.02):
            break
    report.send((latencies, failures))


def _profile_file(plan: Plan, kind: str) -> Path | None:
    if plan.profile is None:
        return None
    return plan.profile.with_name(f"{plan.store}-{plan.loop}-{plan.length}-{kind}.txt")


def bench(plan: Plan) -> Result:
    """One coordinator process; `repeats` interleaved batches of each kind and each floor."""
    store, length, chunked, unchunked = plan.store, plan.length, plan.chunked, plan.whole
    summers, concurrency, repeats = plan.summers, plan.concurrency, plan.repeats
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        redis = stack.enter_context(redis_server(directory, appendonly=False)) if store == "redis" else None
        port = free_port()
        total = chunked + unchunked
        coordinator = stack.enter_context(
            coordinator_process(
                directory,
                update_phase_config(port, length, total, summers, redis.url if redis else None),
                port,
                env=_loop_env(plan.loop),
            )
        )
        assert coordinator.process is not None
        pid = coordinator.process.pid
        client = PetClient(coordinator.url)
        wait_until(lambda: coordinator.status()["phase"] == "sum", 30, "the sum phase")
        params = client.params()
        for _ in range(summers):
            keys = keys_for(params, Task.SUM)
            answer = client.post(sealed(keys, params, compose_sum(keys, params, ephemeral())))
            assert answer.result == "accepted", answer
        wait_until(lambda: coordinator.status()["phase"] == "update", 30, "the update phase")
        sums = client.sums()
        assert sums is not None
        assert len(sums) == summers
        print(
            f"[{store}, L={length:,}] preparing {chunked} chunked + {unchunked} whole updates…",
            file=sys.stderr,
        )
        weights = np.random.default_rng(0).uniform(-1, 1, length).astype(np.float32)
        template = compose_update(keys_for(params, Task.UPDATE), params, sums, weights)
        floor_keys = EncryptKeyPair.generate()
        chunked_messages = _prepare(template, params, chunked, CHUNK_SIZE, floor_keys)
        whole_messages = _prepare(template, params, unchunked, None, floor_keys)
        per_message = len(chunked_messages[0].bodies)
        largest = max(len(m.bodies[0]) for m in whole_messages) + 1024
        # Floor (a) runs in this process with the coordinator's malloc settings: a floor that
        # page-faults its buffers in would flatter the ratio.
        allocator.keep_freed_buffers(largest)
        bare = stack.enter_context(_bare_server(largest, plan.loop))
        loops = {coordinator_loop(pid), bare_loop(bare[0])}
        assert loops == {plan.loop}, f"asked for {plan.loop}, the servers run on {loops}"
        result = Result(store, length, per_message, plan.loop)
        for index in range(repeats):
            batch = chunked_messages[index::repeats]
            requests = sum(len(m.bodies) for m in batch)
            redis_before = cpu_seconds(redis.process.pid) if redis else 0.0
            with _py_spy(pid, _profile_file(plan, "chunked")):
                cpu, wall, answers, threads = _timed_post(pid, coordinator.url, batch, concurrency)
            result.redis_cpu += cpu_seconds(redis.process.pid) - redis_before if redis else 0.0
            result.chunked.add(cpu, wall, requests, len(batch), _lost(answers), threads)
            cpu, wall, answers, _ = _timed_post(bare[1], bare[0], batch, concurrency)
            assert all(a == "200" for each in answers for a in each), "the bare server failed"
            result.bare.add(cpu, wall, requests, len(batch))
            chunk_bodies = [body for message in batch for body in message.bodies]
            sdk, raw = asyncio.run(_client_posts(bare[0], chunk_bodies))
            result.client_sdk.add(sdk, 0.0, len(chunk_bodies), len(batch))
            result.client_raw.add(raw, 0.0, len(chunk_bodies), len(batch))
            result.open_chunks.add(_open_verify(batch, floor_keys, None), 0.0, requests, len(batch))
            whole = whole_messages[index::repeats]
            with (
                _py_spy(pid, _profile_file(plan, "whole")),
                _healthz_probe(coordinator.url, plan.probe, result.healthz),
            ):
                cpu, wall, answers, threads = _timed_post(pid, coordinator.url, whole, concurrency)
            result.unchunked.add(cpu, wall, len(whole), len(whole), _lost(answers), threads)
            cpu, wall, _, _ = _timed_post(bare[1], bare[0], whole, concurrency)
            result.bare_unchunked.add(cpu, wall, len(whole), len(whole))
            result.open_unchunked.add(_open_verify(whole, floor_keys, length), 0.0, len(whole), len(whole))
            openssl = _open_verify(whole, floor_keys, length, openssl=True)
            result.openssl_unchunked.add(openssl, 0.0, len(whole), len(whole))
        status = coordinator.status()
        accepted = status["counts"]["update"]["accepted"]
        assert accepted == total, f"the coordinator accepted {accepted} of {total} updates"
    return result


def _us(seconds: float, count: int) -> float:
    return seconds / max(1, count) * 1e6


def _per(tally: Tally, per_message: bool) -> list[float]:
    """CPU seconds per request (or per message) of each batch, in the order they ran."""
    return [cpu / max(1, messages if per_message else requests) for cpu, requests, messages in tally.batches]


def paired_ratios(ours: Tally, floors: list[Tally], per_message: bool = False) -> list[float]:
    """Ours ÷ floor per repeat: each batch of ours against the floor batches run right beside
    it. On a shared machine the speed of the cores drifts over a run (other tenants); a ratio
    of neighbours cancels the drift, and the median of the repeats drops a batch that an
    outside burst hit. (A ratio of sums would let one slow batch of either side decide it.)"""
    floor = [sum(parts) for parts in zip(*(_per(f, per_message) for f in floors), strict=True)]
    return [mine / base for mine, base in zip(_per(ours, per_message), floor, strict=True)]


def best_ratio(ours: Tally, floors: list[Tally], per_message: bool = False) -> float:
    """Ours' fastest repeat ÷ the floor's fastest (a floor of parts: each part's fastest).
    Printed for information only: interference only adds time, but ours varies more than its
    floor (a pool, the GC, background tasks: real costs), so the minimum flatters ours."""
    floor = sum(min(_per(part, per_message)) for part in floors)
    return min(_per(ours, per_message)) / floor


def _ratio_cell(paired: list[float], best: float) -> str:
    median = statistics.median(paired)
    return f"{median:.2f}× ({min(paired):.2f}–{max(paired):.2f}) · {best:.2f}×"


def report(results: list[Result]) -> None:
    table = Table(title="Coordinator CPU per chunk (3,912 B) and per whole update, with same-run floors")
    columns: tuple[str, ...] = ("store", "loop", "weights", "what", "ours µs", "ours wall µs")
    columns += ("floor", "floor µs", "ratio: median of paired repeats (range) · fastest ÷ fastest", "target")
    for column in columns:
        table.add_column(column, justify="left" if column in ("store", "loop", "what", "floor") else "right")
    for r in results:
        chunk = _us(r.chunked.cpu, r.chunked.requests)
        opened = _us(r.open_chunks.cpu, r.open_chunks.requests)
        bare = _us(r.bare.cpu, r.bare.requests)
        ratios = paired_ratios(r.chunked, [r.open_chunks, r.bare])
        ratio, best = statistics.median(ratios), best_ratio(r.chunked, [r.open_chunks, r.bare])
        redis_cpu = _us(r.redis_cpu, r.chunked.requests)
        redis_note = f" (+ redis-server {redis_cpu:.0f})" if r.store == "redis" else ""
        bare_wall = _us(r.bare.wall, r.bare.requests)
        table.add_row(
            r.store,
            r.loops,
            f"{r.length:,}",
            f"per chunk ({r.chunks_per_message} per update){redis_note}",
            f"{chunk:.0f}",
            f"{_us(r.chunked.wall, r.chunked.requests):.0f}",
            f"open+verify {opened:.0f} + bare aiohttp {bare:.0f} (wall {bare_wall:.0f})",
            f"{opened + bare:.0f}",
            _ratio_cell(ratios, best),
            f"≤ {CHUNK_TARGET}× {'ok' if ratio <= CHUNK_TARGET else 'MISSED'}",
        )
        whole = _us(r.unchunked.cpu, r.unchunked.messages)
        bare_whole = _us(r.bare_unchunked.cpu, r.bare_unchunked.messages)
        floor = _us(r.open_unchunked.cpu, r.open_unchunked.messages)
        ratios = paired_ratios(r.unchunked, [r.open_unchunked], per_message=True)
        ratio, best = statistics.median(ratios), best_ratio(r.unchunked, [r.open_unchunked], per_message=True)
        table.add_row(
            r.store,
            r.loops,
            f"{r.length:,}",
            "per whole update",
            f"{whole:.0f}",
            f"{_us(r.unchunked.wall, r.unchunked.messages):.0f}",
            f"open+verify + numpy add (HTTP alone, bare aiohttp: {bare_whole:.0f}, not in the floor)",
            f"{floor:.0f}",
            _ratio_cell(ratios, best),
            f"≤ {CHUNKED_TARGET}× {'ok' if ratio <= CHUNKED_TARGET else 'MISSED'}",
        )
    Console(width=180).print(table)
    for r in results:
        print(
            f"{r.store}, {r.loops} (both servers), L={r.length:,}: {r.chunked.messages} chunked updates "
            f"= {r.chunked.requests} chunks, "
            f"{r.unchunked.messages} whole updates; lost: {r.chunked.lost + r.unchunked.lost}"
        )
    for r in results:
        sdk, raw = _us(r.client_sdk.cpu, r.client_sdk.requests), _us(r.client_raw.cpu, r.client_raw.requests)
        print(
            f"{r.store}, {r.loops}, L={r.length:,}: participant CPU per chunk POST: our SDK's client "
            f"{sdk:.0f} µs, a bare aiohttp session {raw:.0f} µs ({sdk / raw:.2f}×)"
        )
    for r in results:
        whole = _us(r.unchunked.cpu, r.unchunked.messages)
        best = _us(r.openssl_unchunked.cpu, r.openssl_unchunked.messages)
        print(
            f"{r.store}, {r.loops}, L={r.length:,}: per whole update against libsodium open + OpenSSL "
            f"verify + numpy add ({best:.0f} µs, not the target's floor): {whole / best:.2f}×"
        )
    for r in results:
        for what, tally, count in (
            ("chunk", r.chunked, r.chunked.requests),
            ("whole update", r.unchunked, r.unchunked.messages),
        ):
            parts = ", ".join(
                f"{name} {_us(tally.threads[name], count):.0f}" for name in sorted(tally.threads)
            )
            print(f"{r.store}, {r.loops}, L={r.length:,}: coordinator µs per {what} by thread: {parts}")
    for r in results:
        if r.healthz.latencies or r.healthz.failures:
            print(
                f"{r.store}, {r.loops}, L={r.length:,}: /healthz during the whole updates: "
                f"{r.healthz.summary()}"
            )
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks chunks", description=__doc__)
    parser.add_argument("--length", type=int, nargs="+", default=[100_000, 10_000])
    parser.add_argument("--chunks", type=int, default=3000, help="chunks per store and length (rounded up)")
    parser.add_argument("--whole", type=int, default=300, help="unchunked updates per store and length")
    parser.add_argument("--summers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=6, help="interleaved batches (each kind, each floor)")
    parser.add_argument("--store", choices=["memory", "redis"], nargs="+", default=["memory", "redis"])
    default_loop = event_loop.loop_factory()[0]
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        nargs="+",
        default=[default_loop],
        help=f"event loop(s) of the coordinator and the bare server (default: {default_loop}, as it runs)",
    )
    parser.add_argument(
        "--probe-healthz",
        action="store_true",
        help="poll /healthz every 20 ms during the whole-update batches and print its latency",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile the coordinator during its batches with py-spy (collapsed stacks into DIR)",
    )
    args = parser.parse_args(argv)
    if args.py_spy is not None:
        if shutil.which("py-spy") is None:
            parser.error("py-spy is not installed (pip install py-spy)")
        args.py_spy.mkdir(parents=True, exist_ok=True)
    if "uvloop" in args.loop and importlib.util.find_spec("uvloop") is None:
        parser.error("uvloop is not installed (pip install uvloop), choose --loop asyncio")
    if "redis" in args.store and shutil.which("redis-server") is None:
        parser.error("redis-server is not installed")
    results = []
    for store, loop, length in itertools.product(args.store, args.loop, args.length):
        step = CHUNK_SIZE - 136 - 48 - 8
        per_message = math.ceil((length * 6 + 400) / step)  # a first guess; the result prints the count
        # at most 1,000 updates in all: what the M3 model type aggregates (the phase's maximum)
        chunked = max(args.repeats, min(MAX_UPDATES // 2, math.ceil(args.chunks / per_message)))
        whole = max(args.repeats, min(args.whole, MAX_UPDATES - chunked))
        profile = args.py_spy / "stacks" if args.py_spy else None
        plan = Plan(
            store,
            loop,
            length,
            chunked,
            whole,
            args.summers,
            args.concurrency,
            args.repeats,
            profile,
            args.probe_healthz,
        )
        results.append(bench(plan))
    report(results)
