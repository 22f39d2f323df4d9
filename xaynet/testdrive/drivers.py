"""Where test-drive's participants run: in this process, or spread over `--workers` processes.

One event loop cannot keep 10,000 participants' polling, composing and sending on time, so
the participants are split into contiguous shares, one `ParticipantGroup` per spawned driver
process. The drivers start (imports, workload) before the embedded coordinator does, so its
first Sum window is not spent waiting for them; they learn the coordinator's URL with "start".
The parent and each driver talk over a pipe: the parent asks for a round's tally
when its global model appears; a driver tells the parent when its participants hit a problem
(a refused model, a coordinator they gave up on), and answers "stopped" with its peak memory
when told to stop. A driver that dies (kill -9, out of memory) is seen through its process
state, so test-drive stops with one line instead of waiting for rounds that cannot complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from xaynet.testdrive.group import GroupSettings, ParticipantGroup, peak_rss_mb
from xaynet.testdrive.tally import RoundTally
from xaynet.testdrive.workloads import Workload, make_workload

ANSWER_SECONDS = 60.0  # a driver busy with thousands of participants still answers within this
READY_SECONDS = 120.0  # for a spawned driver to import everything and build its workload


class Drivers(Protocol):
    async def __aenter__(self) -> Drivers: ...
    async def __aexit__(self, *_: object) -> None: ...
    async def start(self, url: str) -> None: ...
    async def stop(self) -> None: ...  # idempotent; before the coordinator stops (see driver.py)
    def problem(self) -> tuple[str, str] | None: ...
    async def tallies(self, seed: bytes) -> list[RoundTally]: ...
    def peak_rss(self) -> list[float | None]: ...
    def pids(self) -> list[int]: ...


def shares(participants: int, workers: int) -> list[range]:
    """Contiguous index ranges of (nearly) equal size, one per driver."""
    workers = max(1, min(workers, participants))
    bounds = [participants * k // workers for k in range(workers + 1)]
    return [range(bounds[k], bounds[k + 1]) for k in range(workers)]


class LocalDrivers:
    """All participants on the caller's loop (--workers 1, or a workload that is no name)."""

    def __init__(self, participants: int, settings: GroupSettings, workload: Workload) -> None:
        self.participants, self.settings, self.workload = participants, settings, workload
        self.group: ParticipantGroup | None = None

    async def __aenter__(self) -> LocalDrivers:
        return self

    async def start(self, url: str) -> None:
        self.group = ParticipantGroup(range(self.participants), url, self.settings, self.workload)
        await self.group.__aenter__()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        group, self.group = self.group, None
        if group is not None:
            await group.__aexit__()

    def problem(self) -> tuple[str, str] | None:
        return None if self.group is None else self.group.problem()

    async def tallies(self, seed: bytes) -> list[RoundTally]:
        return [RoundTally(seed) if self.group is None else self.group.tally(seed)]

    def peak_rss(self) -> list[float | None]:
        return []  # the parent's own peak is this driver's

    def pids(self) -> list[int]:
        return []


@dataclass(frozen=True)
class WorkerSpec:
    number: int
    indices: range
    settings: GroupSettings
    task: str  # the workload, rebuilt from its name in the driver
    participants: int  # in the whole run (the workload may split data over them)


def _worker(conn: Connection, spec: WorkerSpec) -> None:
    """A driver process's body."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent stops us
    # asyncio's own loop: uvloop's add_reader makes the pipe non-blocking, and a large tally
    # sent from a thread then fails with EAGAIN
    asyncio.run(_serve(conn, spec))


async def _serve(conn: Connection, spec: WorkerSpec) -> None:
    loop = asyncio.get_running_loop()
    requests: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def readable() -> None:
        try:
            requests.put_nowait(conn.recv())
        except (EOFError, OSError):  # the parent is gone: stop
            loop.remove_reader(conn.fileno())
            requests.put_nowait(("stop",))

    loop.add_reader(conn.fileno(), readable)
    workload = make_workload(spec.task, spec.participants)
    conn.send(("ready",))
    request = await requests.get()
    if request[0] != "start":
        return
    told: tuple[str, str] | None = None
    async with ParticipantGroup(spec.indices, str(request[1]), spec.settings, workload) as group:
        while True:
            try:
                request = await asyncio.wait_for(requests.get(), 0.5)
            except TimeoutError:
                problem = group.problem()
                if problem is not None and problem != told:
                    conn.send(("problem", *problem))
                    told = problem
                continue
            if request[0] == "tally":
                await asyncio.to_thread(conn.send, ("tally", group.tally(request[1])))
            elif request[0] == "stop":
                break
    with contextlib.suppress(OSError):
        conn.send(("stopped", peak_rss_mb()))


@dataclass
class _Worker:
    spec: WorkerSpec
    process: BaseProcess
    conn: Connection
    peak_rss: float | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)

    def describe(self, total: int) -> str:
        first, last = self.spec.indices[0], self.spec.indices[-1]
        return f"driver process {self.spec.number + 1} of {total} (participants {first}–{last})"


def _exit_reason(process: BaseProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class ProcessDrivers:
    """Participants spread over spawned driver processes, one `ParticipantGroup` each."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self.specs = specs
        self.workers: list[_Worker] = []
        self._stopped = False

    async def __aenter__(self) -> ProcessDrivers:
        context = multiprocessing.get_context("spawn")
        for spec in self.specs:
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_worker, args=(theirs, spec), name=f"xaynet-driver-{spec.number + 1}", daemon=True
            )
            process.start()
            theirs.close()
            self.workers.append(_Worker(spec, process, ours))
        for worker in self.workers:
            await self._answer(worker, READY_SECONDS, "did not start")
        return self

    async def start(self, url: str) -> None:
        for worker in self.workers:
            worker.conn.send(("start", url))

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for worker in self.workers:
            with contextlib.suppress(OSError):
                worker.conn.send(("stop",))
        deadline = time.monotonic() + 30
        for worker in self.workers:
            while worker.process.is_alive() and time.monotonic() < deadline:
                self._drain(worker)
                if worker.peak_rss is not None:
                    break
                await asyncio.sleep(0.05)
            self._drain(worker)
        for worker in self.workers:
            await asyncio.to_thread(worker.process.join, max(0.1, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                await asyncio.to_thread(worker.process.join, 5)
            worker.conn.close()

    def _drain(self, worker: _Worker) -> list[tuple[Any, ...]]:
        """Messages the driver sent on its own; answers are returned, the rest recorded."""
        answers = []
        with contextlib.suppress(EOFError, OSError):
            while worker.conn.poll():
                message = worker.conn.recv()
                if message[0] == "problem":
                    worker.problems.append((message[1], message[2]))
                elif message[0] == "stopped":
                    worker.peak_rss = message[1]
                else:
                    answers.append(message)
        return answers

    def problem(self) -> tuple[str, str] | None:
        total = len(self.workers)
        for worker in self.workers:
            self._drain(worker)
            if worker.problems:
                return worker.problems[0]
            if not worker.process.is_alive():
                return "died", f"{worker.describe(total)} {_exit_reason(worker.process)}"
        return None

    async def tallies(self, seed: bytes) -> list[RoundTally]:
        """Every driver's tally of the round; RuntimeError if one died or does not answer."""
        for worker in self.workers:
            worker.conn.send(("tally", seed))
        return [
            (await self._answer(worker, ANSWER_SECONDS, "did not answer in time"))[1]
            for worker in self.workers
        ]

    async def _answer(self, worker: _Worker, seconds: float, late: str) -> tuple[Any, ...]:
        """The driver's next answer; RuntimeError (one line) if it dies or stays silent."""
        deadline = time.monotonic() + seconds
        while True:
            answers = self._drain(worker)
            if answers:
                return answers[0]
            if not worker.process.is_alive():
                raise RuntimeError(f"{worker.describe(len(self.workers))} {_exit_reason(worker.process)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{worker.describe(len(self.workers))} {late}")
            await asyncio.sleep(0.02)

    def peak_rss(self) -> list[float | None]:
        return [worker.peak_rss for worker in self.workers]

    def pids(self) -> list[int]:
        return [worker.process.pid for worker in self.workers if worker.process.pid is not None]
