"""Run N participants on one event loop against an embedded or remote coordinator.

The driver follows the coordinator through `GET /status` (phase changes give the phase
durations), fetches each new global model and checks it against the (weighted) mean of exactly the
models that round aggregated. It stops after the requested number of rounds, or fails when
no round completes in time ("stall").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from xaynet.core.bincode import RoundParameters
from xaynet.core.errors import XaynetError
from xaynet.core.mask.model import GlobalModel
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE
from xaynet.sdk import Events, Participant, PollSchedule, Task
from xaynet.sdk.client import PostAnswer
from xaynet.testdrive.display import Display
from xaynet.testdrive.records import Recorder, RoundRecord
from xaynet.testdrive.workloads import RandomVectors, RefusedModelError, Workload


@dataclass(frozen=True)
class Options:
    participants: int = 10
    rounds: int = 3
    model_length: int = 4
    url: str | None = None
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    stall_seconds: float = 300.0
    live: bool | None = None  # None: live display when stdout is a terminal
    workload: Workload = field(default_factory=RandomVectors)  # what participants send, how it is checked
    plot: str | None = None  # PNG of accuracy per round (learning tasks)


@dataclass
class Outcome:
    completed: list[RoundRecord]
    failed_rounds: int
    stalled: bool
    wall_seconds: float
    interrupted: bool = False  # Ctrl-C: `completed` holds the rounds finished before it
    refused: str | None = None  # a participant's model would have been clamped (or did not fit)

    @property
    def ok(self) -> bool:
        return (
            not self.stalled
            and not self.interrupted
            and not self.refused
            and all(r.verdict == "ok" for r in self.completed)
        )


@contextlib.asynccontextmanager
async def _coordinator(options: Options) -> AsyncIterator[str]:
    if options.url is not None:
        yield options.url.rstrip("/")
        return
    from xaynet.coordinator.service import running
    from xaynet.testdrive.embedded import embedded_settings

    workload = options.workload
    settings = embedded_settings(
        options.participants, workload.model_length(options.model_length), bound_type=workload.bound_type
    )
    async with running(settings, host="127.0.0.1", port=0) as coordinator:
        yield coordinator.url


def _participant(
    index: int, url: str, session: aiohttp.ClientSession, recorder: Recorder, options: Options
) -> Participant:
    current: dict[str, bytes] = {}

    def new_round(params: RoundParameters) -> None:
        current["seed"] = params.seed

    def task(chosen: Task, params: RoundParameters) -> None:
        if chosen is not Task.NONE:
            recorder.selected(params.seed, chosen.name.lower())

    def sent(chosen: Task, answer: PostAnswer, size: int) -> None:
        recorder.sent(current["seed"], index, chosen.name.lower(), answer.result, size)

    def worked(chosen: Task, seconds: float) -> None:
        if chosen is not Task.NONE:
            recorder.worked(current["seed"], index, chosen.name.lower(), seconds)

    participant = Participant(
        url,
        session=session,
        max_message_size=options.max_message_size,
        events=Events(new_round=new_round, task=task, sent=sent, worked=worked),
        schedule=PollSchedule(minimum=0.05, maximum=2.0),
        give_up_after=options.stall_seconds,
    )
    options.workload.attach(index, participant)  # its model (and scalar) each round
    return participant


async def run(options: Options) -> Outcome:
    """Drive the rounds; on Ctrl-C (cancellation) print what finished, then let it propagate."""
    recorder = Recorder()
    display = Display(options)
    started = time.monotonic()
    outcome = Outcome([], 0, False, 0.0)
    this = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if this is not None:  # SIGTERM stops like Ctrl-C: the summary of the finished rounds
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, this.cancel)
    try:
        await _drive(options, recorder, display, outcome)
    except asyncio.CancelledError:
        outcome.interrupted = True
        outcome.wall_seconds = time.monotonic() - started
        display.summary(outcome)
        raise
    outcome.wall_seconds = time.monotonic() - started
    display.summary(outcome)
    for line in options.workload.summary(outcome.completed):
        display.note(line)
    if options.plot:
        from xaynet.testdrive.plot import plot_accuracy

        display.note(plot_accuracy(options.plot, outcome.completed, options.workload))
    return outcome


async def _drive(options: Options, recorder: Recorder, display: Display, outcome: Outcome) -> None:
    async with _coordinator(options) as url:
        connector = aiohttp.TCPConnector(limit=128)
        async with aiohttp.ClientSession(connector=connector) as session:
            participants = [
                _participant(i, url, session, recorder, options) for i in range(options.participants)
            ]
            stop = asyncio.Event()
            tasks = [asyncio.create_task(p.run(stop)) for p in participants]
            try:
                with display:
                    for line in options.workload.describe():
                        display.note(line)
                    await _follow(
                        url,
                        session=session,
                        recorder=recorder,
                        options=options,
                        display=display,
                        tasks=tasks,
                        outcome=outcome,
                    )
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
        response.raise_for_status()
        result: dict[str, Any] = json.loads(await response.read())
        return result


async def _follow(
    url: str,
    *,
    session: aiohttp.ClientSession,
    recorder: Recorder,
    options: Options,
    display: Display,
    tasks: list[asyncio.Task[None]],
    outcome: Outcome,
) -> None:
    completed = outcome.completed
    by_round: dict[int, RoundRecord] = {}
    last_phase: tuple[int, str] | None = None
    phase_started = time.monotonic()
    last_progress = time.monotonic()
    seen_model_round: int | None = None
    unreachable_since: float | None = None
    while len(completed) < options.rounds:
        crashed = [t for t in tasks if t.done() and t.exception() is not None]
        if crashed:
            failure = crashed[0].exception()
            if isinstance(failure, RefusedModelError):
                outcome.refused = str(failure)
                display.note(outcome.refused)
                return
            display.note(f"participants gave up: {failure}")
            outcome.stalled = True
            return
        if time.monotonic() - last_progress > options.stall_seconds:
            display.note(f"no round completed for {options.stall_seconds:g} s: stalled")
            outcome.stalled = True
            return
        try:
            status = await _get_json(session, f"{url}/status")
            round_id, phase = int(status["round_id"]), str(status["phase"])
            now = time.monotonic()
            if (round_id, phase) != last_phase:
                if last_phase is not None and last_phase[0] in by_round:
                    by_round[last_phase[0]].phase_seconds[last_phase[1]] = now - phase_started
                if phase == "sum":
                    async with session.get(f"{url}/params") as response:
                        response.raise_for_status()
                        params = RoundParameters.from_bincode(await response.read())
                    known = by_round.get(round_id)
                    # A new round, or a known id with another seed: a restarted in-memory coordinator.
                    if known is None or known.seed != params.seed:
                        record = recorder.round(params.seed)
                        record.round_id, record.started = round_id, now
                        record.model_length = params.model_length  # the coordinator's, whatever -l said
                        by_round[round_id] = record
                if phase == "error":
                    outcome.failed_rounds += 1
                last_phase, phase_started = (round_id, phase), now
            if round_id in by_round:
                counts = status.get("counts", {})
                by_round[round_id].counts = {k: int(v["accepted"]) for k, v in counts.items()}
            model_info = status.get("global_model")
            model_round = int(model_info["round_id"]) if isinstance(model_info, dict) else None
            if model_round is not None and model_round != seen_model_round:
                if model_round in by_round:
                    record = by_round[model_round]
                    record.finished = now
                    last = status.get("last_round")
                    if isinstance(last, dict) and last.get("round_id") == model_round:
                        record.counts = {k: int(v["accepted"]) for k, v in last["counts"].items()}
                        record.phase_seconds = {k: float(v) for k, v in last["phase_seconds"].items()}
                    await _check(session, url, record, options)
                    completed.append(record)
                    display.round_completed(record)
                seen_model_round, last_progress = model_round, now
        except (aiohttp.ClientError, TimeoutError, XaynetError) as error:
            # A restarting coordinator: ride it out (the stall limit still applies).
            if unreachable_since is None:
                unreachable_since = time.monotonic()
                display.note(f"coordinator unreachable ({type(error).__name__}); waiting for it")
            await asyncio.sleep(0.5)
            continue
        if unreachable_since is not None:
            display.note(f"coordinator is back after {time.monotonic() - unreachable_since:.1f} s")
            unreachable_since = None
        display.update(status, by_round.get(round_id), completed, outcome.failed_rounds, now - phase_started)
        await asyncio.sleep(0.05)


async def _check(session: aiohttp.ClientSession, url: str, record: RoundRecord, options: Options) -> None:
    async with session.get(f"{url}/model") as response:
        body = await response.read()
        served_round = response.headers.get("X-Xaynet-Round")
    if served_round is not None and int(served_round) != record.round_id:
        record.verdict = "unchecked: a newer model replaced it before it was fetched"
        return
    model = GlobalModel.from_bincode(body)
    try:
        error, tolerance = await asyncio.to_thread(options.workload.check, model, record)
    except ValueError as failure:
        record.verdict = f"unchecked: {failure}"
        return
    record.max_error = error
    record.verdict = "ok" if error <= tolerance else "WRONG"
    await asyncio.to_thread(options.workload.evaluate, model, record)
