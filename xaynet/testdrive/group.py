"""A share of test-drive's participants on one event loop, with the tallies of their rounds.

Each driver (the test-drive process itself, or one of its `--workers` processes) runs one
group. The group follows the coordinator's `/status` once per `WATCH_SECONDS` so its
participants drop work whose phase already ended (`PhaseWatch`), counts what they were
selected for and sent, and adds every model the coordinator accepted into the round's
running sum (`RoundTally`); the models themselves live only while their participant sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from xaynet.core.bincode import RoundParameters
from xaynet.core.errors import XaynetError
from xaynet.core.mask import kernel as mask_kernel
from xaynet.sdk import Events, Participant, PollSchedule, Task
from xaynet.sdk.client import CoordinatorClient, PostAnswer
from xaynet.testdrive.tally import RoundTally
from xaynet.testdrive.workloads import RefusedModelError, Workload

T = TypeVar("T")
WATCH_SECONDS = 0.5
SHARED_FETCH_SECONDS = 0.25  # how stale a driver's shared /params and /sums may be
ROUNDS_KEPT = 8  # tallies of rounds the parent has not asked for yet (a failed round's)
PHASE_ORDER = {"sum": 0, "update": 1, "sum2": 2, "unmask": 3}
FINAL_RESULTS = frozenset({"accepted", "rejected", "discarded", "invalid"})


def poll_maximum(participants_per_driver: int) -> float:
    """Longest pause between a waiting participant's ticks: one loop ticks at most ~1,000 times a
    second while nothing changes (2 s up to 2,000 participants, 10 s, the wheel's, from 10,000)."""
    return max(2.0, min(10.0, participants_per_driver / 1000))


@dataclass(frozen=True)
class GroupSettings:
    """What every driver needs besides its participants' indices (picklable)."""

    max_message_size: int | None
    stall_seconds: float
    poll_maximum: float = 2.0
    in_flight: int = 16  # updates composed and sent at once per driver


class SharedFetches(CoordinatorClient):
    """The participants of one driver share their `/params` and `/sums` fetches: at most one
    request each per `SHARED_FETCH_SECONDS`, concurrent callers awaiting the same one. They all
    run on one machine and would read identical bytes; per-participant polling cost 31 % of a
    driver's CPU at 10,000 participants and kept sum participants out of the Sum window. The
    coordinator's load from real devices polling is the benchmarks' subject, not test-drive's."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        super().__init__(base_url, session)
        self._cached: dict[str, tuple[float, Any]] = {}
        self._pending: dict[str, asyncio.Future[Any]] = {}

    async def _shared(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        cached = self._cached.get(key)
        if cached is not None and time.monotonic() - cached[0] < SHARED_FETCH_SECONDS:
            result: T = cached[1]
            return result
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = asyncio.ensure_future(fetch())

            def settle(done: asyncio.Future[Any]) -> None:
                self._pending.pop(key, None)
                if not done.cancelled() and done.exception() is None:  # retrieved: never "unretrieved"
                    self._cached[key] = (time.monotonic(), done.result())

            pending.add_done_callback(settle)
        shared: T = await asyncio.shield(pending)
        return shared

    async def params(self) -> tuple[RoundParameters, bytes]:
        return await self._shared("params", super().params)

    async def sums(self) -> dict[bytes, bytes] | None:
        return await self._shared("sums", super().sums)


class PhaseWatch:
    """The coordinator's round and phase, as `/status` said at most `WATCH_SECONDS` ago."""

    def __init__(self) -> None:
        self.seed: bytes | None = None
        self.seed_round: int | None = None
        self.round_id: int | None = None
        self.phase = ""
        self.past: set[bytes] = set()

    def ended(self, phase: str, seed: bytes) -> bool:
        """Whether the coordinator has left `phase` of the round with `seed` (unknown: no)."""
        if seed in self.past:
            return True
        if seed != self.seed:
            return False  # a round the watch has not seen yet
        if self.round_id != self.seed_round or self.phase == "error":
            return True
        return PHASE_ORDER.get(self.phase, -1) > PHASE_ORDER.get(phase, 99)

    async def follow(self, session: aiohttp.ClientSession, url: str) -> None:
        while True:
            # anything a garbled or missing answer raises: the watch must outlive it
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError, XaynetError):
                await self._look(session, url)
            await asyncio.sleep(WATCH_SECONDS)

    async def _look(self, session: aiohttp.ClientSession, url: str) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with session.get(f"{url}/status", timeout=timeout) as response:
            if response.status != 200:
                return
            status = json.loads(await response.read())
        self.round_id, self.phase = int(status["round_id"]), str(status["phase"])
        if self.phase in PHASE_ORDER and self.round_id != self.seed_round:
            async with session.get(f"{url}/params", timeout=timeout) as response:
                response.raise_for_status()
                seed = RoundParameters.from_bincode(await response.read()).seed
            if self.seed is not None and seed != self.seed:
                self.past.add(self.seed)
            self.seed, self.seed_round = seed, self.round_id


class ParticipantGroup:
    """Participants `indices` against `url`; use as `async with`."""

    def __init__(self, indices: range, url: str, settings: GroupSettings, workload: Workload) -> None:
        self.indices = indices
        self.url = url
        self.settings = settings
        self.workload = workload
        self.watch = PhaseWatch()
        self._tallies: dict[bytes, RoundTally] = {}
        self._sending: dict[int, tuple[bytes, Any, float]] = {}  # index -> (seed, model, scalar)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._client: SharedFetches | None = None
        self._sum2_gate: asyncio.Semaphore | None = None

    async def __aenter__(self) -> ParticipantGroup:
        # numba's import and the kernel's cached machine code take ~0.5 s on first use: paid
        # here, before the first round, not inside the first updater's timed mask derivation
        mask_kernel.load()
        connector = aiohttp.TCPConnector(limit=128)
        self._session = aiohttp.ClientSession(connector=connector)
        self._client = SharedFetches(self.url, self._session)
        self._watcher = asyncio.create_task(self.watch.follow(self._session, self.url))
        gate = asyncio.Semaphore(self.settings.in_flight)
        self._sum2_gate = asyncio.Semaphore(1)  # derivations one at a time: the first ends sooner
        participants = [self._participant(i, gate) for i in self.indices]
        self._tasks = [asyncio.create_task(p.run(self._stop)) for p in participants]
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        for task in self._tasks:  # a participant deep in a Sum2 derivation stops at its next mask
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._session is not None:
            await self._session.close()

    def problem(self) -> tuple[str, str] | None:
        """("refused", why) when a model did not fit the round, ("gave_up", why) when a
        participant gave up on the coordinator; None while all run."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                failure = task.exception()
                kind = "refused" if isinstance(failure, RefusedModelError) else "gave_up"
                return kind, str(failure)
        return None

    def tally(self, seed: bytes) -> RoundTally:
        """This group's account of the round with `seed` (empty if none of ours took part)."""
        return self._tallies.get(seed) or RoundTally(seed)

    def _round(self, seed: bytes) -> RoundTally:
        tally = self._tallies.get(seed)
        if tally is None:
            if len(self._tallies) >= ROUNDS_KEPT:
                del self._tallies[next(iter(self._tallies))]
            tally = self._tallies[seed] = RoundTally(seed)
        return tally

    def _participant(self, index: int, gate: asyncio.Semaphore) -> Participant:
        current: dict[str, bytes] = {}
        # A sum participant sends two messages (sum, then sum2) under the same task: the SDK's
        # event names the task, so its first final answer of the round is the sum message's.
        answered_sum: set[bytes] = set()  # the rounds (seeds) whose sum message had its answer

        def new_round(params: RoundParameters) -> None:
            current["seed"] = params.seed
            answered_sum.clear()
            self._sending.pop(index, None)

        def task(chosen: Task, params: RoundParameters) -> None:
            if chosen is not Task.NONE:
                self._round(params.seed).selected[chosen.name.lower()] += 1

        def sent(chosen: Task, answer: PostAnswer, size: int) -> None:
            tally = self._round(current["seed"])
            tally.bytes_sent += size
            if answer.result in FINAL_RESULTS:
                work = chosen.name.lower()
                if chosen is Task.SUM:
                    work = "sum2" if current["seed"] in answered_sum else "sum"
                    answered_sum.add(current["seed"])
                if answer.result != "accepted":
                    tally.refuse(work, answer.result, answer.reason)
            if chosen is not Task.UPDATE or answer.result not in FINAL_RESULTS:
                return
            sending = self._sending.pop(index, None)
            if answer.result == "accepted" and sending is not None and sending[0] == current["seed"]:
                tally.add(index, sending[1], sending[2])

        def worked(chosen: Task, seconds: float) -> None:
            if chosen is Task.UPDATE:
                per_participant = self._round(current["seed"]).sdk_update_seconds
                per_participant[index] = per_participant.get(index, 0.0) + seconds

        def dropped(chosen: Task, _reason: str) -> None:
            self._sending.pop(index, None)
            work = "update" if chosen is Task.UPDATE else "sum2"
            self._round(current["seed"]).dropped[work] += 1

        participant = Participant(
            self.url,
            session=self._session,
            max_message_size=self.settings.max_message_size,
            events=Events(new_round=new_round, task=task, sent=sent, worked=worked, dropped=dropped),
            schedule=PollSchedule(minimum=0.05, maximum=self.settings.poll_maximum, jitter=0.5),
            give_up_after=self.settings.stall_seconds,
            phase_ended=self.watch.ended,
            gate=gate,
            client=self._client,
            sum2_gate=self._sum2_gate,
        )
        self.workload.attach(index, participant)  # its model (and scalar) each round
        provide = participant.model_provider
        assert provide is not None

        def remembered(params: RoundParameters) -> Any:
            weights = provide(params)
            if weights is not None:  # kept until the coordinator answers, then added or dropped
                self._sending[index] = (params.seed, weights, participant.scalar)
            return weights

        participant.model_provider = remembered
        return participant


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM), in MB."""
    return vm_hwm_mb("self")


def vm_hwm_mb(pid: int | str) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
