"""Run N participants on one event loop against an embedded or remote coordinator.

The driver follows the coordinator through `GET /status` (phase changes give the phase
durations), fetches each new global model and checks it against the plain mean of exactly the
models that round aggregated. It stops after the requested number of rounds, or fails when
no round completes in time ("stall").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from xaynet.core.bincode import RoundParameters
from xaynet.core.mask.model import GlobalModel
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE
from xaynet.sdk import Events, Participant, PollSchedule, Task
from xaynet.sdk.client import PostAnswer
from xaynet.testdrive.display import Display
from xaynet.testdrive.records import TOLERANCE, Recorder, RoundRecord, check_model, local_model


@dataclass(frozen=True)
class Options:
    participants: int = 10
    rounds: int = 3
    model_length: int = 4
    url: str | None = None
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    stall_seconds: float = 300.0
    live: bool | None = None  # None: live display when stdout is a terminal


@dataclass
class Outcome:
    completed: list[RoundRecord]
    failed_rounds: int
    stalled: bool
    wall_seconds: float

    @property
    def ok(self) -> bool:
        return not self.stalled and all(r.verdict == "ok" for r in self.completed)


@contextlib.asynccontextmanager
async def _coordinator(options: Options) -> AsyncIterator[str]:
    if options.url is not None:
        yield options.url.rstrip("/")
        return
    from xaynet.coordinator.service import running
    from xaynet.testdrive.embedded import embedded_settings

    settings = embedded_settings(options.participants, options.model_length)
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

    return Participant(
        url,
        session=session,
        max_message_size=options.max_message_size,
        events=Events(new_round=new_round, task=task, sent=sent, worked=worked),
        model_provider=lambda params: local_model(index, params.seed, params.model_length),
        schedule=PollSchedule(minimum=0.05, maximum=2.0),
        give_up_after=options.stall_seconds,
    )


async def run(options: Options) -> Outcome:
    recorder = Recorder()
    display = Display(options)
    started = time.monotonic()
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
                    outcome = await _follow(
                        url, session=session, recorder=recorder, options=options, display=display, tasks=tasks
                    )
            finally:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
    outcome.wall_seconds = time.monotonic() - started
    display.summary(outcome)
    return outcome


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url) as response:
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
) -> Outcome:
    completed: list[RoundRecord] = []
    by_round: dict[int, RoundRecord] = {}
    last_phase: tuple[int, str] | None = None
    phase_started = time.monotonic()
    last_progress = time.monotonic()
    seen_model_round: int | None = None
    failed = 0
    while len(completed) < options.rounds:
        crashed = [t for t in tasks if t.done() and t.exception() is not None]
        if crashed:
            display.note(f"participants gave up: {crashed[0].exception()}")
            return Outcome(completed, failed, True, 0.0)
        if time.monotonic() - last_progress > options.stall_seconds:
            display.note(f"no round completed for {options.stall_seconds:g} s: stalled")
            return Outcome(completed, failed, True, 0.0)
        status = await _get_json(session, f"{url}/status")
        round_id, phase = int(status["round_id"]), str(status["phase"])
        now = time.monotonic()
        if (round_id, phase) != last_phase:
            if last_phase is not None and last_phase[0] in by_round:
                by_round[last_phase[0]].phase_seconds[last_phase[1]] = now - phase_started
            if phase == "sum" and round_id not in by_round:
                async with session.get(f"{url}/params") as response:
                    params = RoundParameters.from_bincode(await response.read())
                record = recorder.round(params.seed)
                record.round_id, record.started = round_id, now
                record.model_length = params.model_length  # the coordinator's, whatever -l said
                by_round[round_id] = record
            if phase == "error":
                failed += 1
            last_phase, phase_started = (round_id, phase), now
        if round_id in by_round:
            counts = status.get("counts", {})
            by_round[round_id].counts = {k: int(v["accepted"]) for k, v in counts.items()}
        model_info = status.get("global_model")
        model_round = int(model_info["round_id"]) if isinstance(model_info, dict) else None
        if model_round is not None and model_round != seen_model_round:
            seen_model_round = model_round
            last_progress = now
            if model_round in by_round:
                record = by_round[model_round]
                record.finished = now
                last = status.get("last_round")
                if isinstance(last, dict) and last.get("round_id") == model_round:
                    record.counts = {k: int(v["accepted"]) for k, v in last["counts"].items()}
                    record.phase_seconds = {k: float(v) for k, v in last["phase_seconds"].items()}
                await _check(session, url, record, options)
                completed.append(record)
        display.update(status, by_round.get(round_id), completed, failed, now - phase_started)
        await asyncio.sleep(0.05)
    return Outcome(completed, failed, False, 0.0)


async def _check(session: aiohttp.ClientSession, url: str, record: RoundRecord, options: Options) -> None:
    async with session.get(f"{url}/model") as response:
        body = await response.read()
        served_round = response.headers.get("X-Xaynet-Round")
    if served_round is not None and int(served_round) != record.round_id:
        record.verdict = "unchecked: a newer model replaced it before it was fetched"
        return
    try:
        error = await asyncio.to_thread(
            check_model, GlobalModel.from_bincode(body), record, record.model_length or options.model_length
        )
    except ValueError as failure:
        record.verdict = f"unchecked: {failure}"
        return
    record.max_error = error
    record.verdict = "ok" if error <= TOLERANCE else "WRONG"
