"""Run N participants against an embedded or remote coordinator, and check every round.

The participants run in one or more drivers (`drivers.py`: this process, or `--workers`
spawned processes; then the embedded coordinator gets a process of its own too). This
process follows the coordinator through `GET /status` (phase changes give the phase
durations), and when a round's global model appears it adds the drivers' tallies of that
round and checks the model against the (weighted) mean of exactly the updates the coordinator
accepted. It stops after the requested number of rounds, or fails when no round completes in
time ("stall") or a driver dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
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
from xaynet.testdrive.display import Display
from xaynet.testdrive.drivers import Drivers, LocalDrivers, ProcessDrivers, WorkerSpec, shares
from xaynet.testdrive.embedded import EmbeddedSpec, describe_minimums, serve_in_process
from xaynet.testdrive.group import ROUNDS_KEPT, GroupSettings, peak_rss_mb, poll_maximum, vm_hwm_mb
from xaynet.testdrive.records import RoundRecord
from xaynet.testdrive.tally import RoundTally
from xaynet.testdrive.workloads import RandomVectors, Workload

COUNT_WAIT_SECONDS = 30.0  # for the drivers to learn of every update the coordinator accepted
DROPPED_SETTLE_SECONDS = 10.0


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
    workers: int = 1  # driver processes; 1: everything in this process (any workload)
    minimums: dict[str, float] = field(default_factory=dict)  # the embedded coordinator's phase minimums
    in_flight: int = 16  # updates composed and sent at once per driver
    json_path: str | None = None  # machine-readable summary, written at the end

    @property
    def drivers(self) -> int:
        return max(1, min(self.workers, self.participants))


@dataclass
class Outcome:
    completed: list[RoundRecord]
    failed_rounds: int
    stalled: bool
    wall_seconds: float
    interrupted: bool = False  # Ctrl-C: `completed` holds the rounds finished before it
    refused: str | None = None  # a participant's model would have been clamped (or did not fit)
    died: str | None = None  # a driver process died: the rounds in `completed` stay reported
    peak_rss_mb: dict[str, Any] = field(default_factory=dict)  # coordinator, drivers, this process

    @property
    def ok(self) -> bool:
        return (
            not self.stalled
            and not self.interrupted
            and not self.refused
            and not self.died
            and all(r.verdict == "ok" for r in self.completed)
        )


@dataclass
class _Coordinator:
    url: str
    pid: int | None  # its own process (None: this one, or a remote coordinator)
    minimums: str | None  # its phase minimums in words (None: a remote coordinator's are unknown)


def _embedded_spec(options: Options) -> EmbeddedSpec:
    workload = options.workload
    return EmbeddedSpec(
        options.participants,
        workload.model_length(options.model_length),
        bound_type=workload.bound_type,
        poll_maximum=_group_settings(options).poll_maximum,
        minimums=dict(options.minimums),
    )


def _group_settings(options: Options) -> GroupSettings:
    per_driver = -(-options.participants // options.drivers)
    return GroupSettings(
        max_message_size=options.max_message_size,
        stall_seconds=options.stall_seconds,
        poll_maximum=poll_maximum(per_driver),
        in_flight=options.in_flight,
    )


@contextlib.asynccontextmanager
async def _coordinator(options: Options) -> AsyncIterator[_Coordinator]:
    if options.url is not None:
        yield _Coordinator(options.url.rstrip("/"), None, None)
        return
    spec = _embedded_spec(options)
    minimums = describe_minimums(spec.settings())
    if options.drivers > 1:  # its own process: the drivers do not share its interpreter lock
        with serve_in_process(spec) as process:
            yield _Coordinator(process.url, process.pid, minimums)
        return
    from xaynet.coordinator.service import running

    async with running(spec.settings(), host="127.0.0.1", port=0) as coordinator:
        yield _Coordinator(coordinator.url, None, minimums)


def _drivers(options: Options) -> Drivers:
    settings = _group_settings(options)
    if options.drivers == 1:
        return LocalDrivers(options.participants, settings, options.workload)
    specs = [
        WorkerSpec(number, indices, settings, options.workload.name, options.participants)
        for number, indices in enumerate(shares(options.participants, options.drivers))
    ]
    return ProcessDrivers(specs)


async def run(options: Options) -> Outcome:
    """Drive the rounds; on Ctrl-C (cancellation) print what finished, then let it propagate."""
    display = Display(options)
    started = time.monotonic()
    outcome = Outcome([], 0, False, 0.0)
    this = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if this is not None:  # SIGTERM stops like Ctrl-C: the summary of the finished rounds
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, this.cancel)
    try:
        await _drive(options, display, outcome)
    except asyncio.CancelledError:
        outcome.interrupted = True
        _finish(options, display, outcome, started)
        raise
    _finish(options, display, outcome, started)
    for line in options.workload.summary(outcome.completed):
        display.note(line)
    if options.plot:
        from xaynet.testdrive.plot import plot_accuracy

        display.note(plot_accuracy(options.plot, outcome.completed, options.workload))
    return outcome


def _finish(options: Options, display: Display, outcome: Outcome, started: float) -> None:
    outcome.wall_seconds = time.monotonic() - started
    outcome.peak_rss_mb["test_drive"] = peak_rss_mb()
    display.summary(outcome)
    dropped = {work: sum(r.dropped.get(work, 0) for r in outcome.completed) for work in ("update", "sum2")}
    if any(dropped.values()):
        display.note(
            f"work stopped because its phase had ended (nothing of it posted): {dropped['update']} "
            f"update(s), {dropped['sum2']} sum2 derivation(s)"
        )
    for line in not_counted_lines(outcome.completed):
        display.note(line)
    display.note(_memory_line(outcome.peak_rss_mb))
    if options.json_path:
        _write_json(options, outcome)


# What the coordinator's answers to an updater mean, in the words of the "not counted" line.
_LATE = {
    "discarded/phase_full": "came when Update had its maximum: ",
    "rejected/phase_ended": "came as Update ended: ",
    "rejected/wrong_phase": "came after Update ended: ",
    "rejected/round_ended": "came after the round ended: ",
}


def not_counted_lines(completed: list[RoundRecord], most: int = 10) -> list[str]:
    """Why selected updaters did not count, per round with a gap (the last `most` of them):
    the coordinator's final answers to them, work dropped when its phase ended, and any
    updater that got no final answer at all."""
    lines = []
    for record in completed:
        selected = record.selected.get("update", 0)
        counted = record.accepted_updates
        if selected <= counted:
            continue
        refused = record.refused.get("update", {})
        ranked = sorted(refused.items(), key=lambda item: -item[1])
        parts = [f"{n} {_LATE.get(answer, '')}{answer}" for answer, n in ranked]
        stopped = record.dropped.get("update", 0)
        if stopped:
            parts.append(f"{stopped} stopped (the phase ended before the update was sent)")
        unanswered = selected - counted - sum(refused.values()) - stopped
        if unanswered > 0:
            parts.append(f"{unanswered} without a final answer")
        elif unanswered < 0:  # never expected: shown rather than hidden
            parts.append(f"{-unanswered} more answers than updaters")
        lines.append(
            f"round {record.round_id}: {selected} selected to update, {counted} accepted; "
            f"not counted: {', '.join(parts)}"
        )
    if len(lines) > most:
        lines = [f"({len(lines) - most} earlier rounds with uncounted updaters: see --json)", *lines[-most:]]
    return lines


def _memory_line(peaks: dict[str, Any]) -> str:
    def mb(value: float | None) -> str:
        return "?" if value is None else f"{value:,.0f} MB"

    coordinator = peaks.get("coordinator", "unknown")
    where = mb(coordinator) if not isinstance(coordinator, str) else coordinator
    drivers = peaks.get("drivers") or []
    driven = f"; drivers {', '.join(mb(v) for v in drivers)}" if drivers else ""
    return f"peak memory (VmHWM): coordinator {where}{driven}; test-drive {mb(peaks.get('test_drive'))}"


def _write_json(options: Options, outcome: Outcome) -> None:
    """The summary HC-style benchmarks read: one JSON object (see `xaynet test-drive --help`)."""
    document = {
        "ok": outcome.ok,
        "participants": options.participants,
        "workers": options.drivers,
        "model_length": options.workload.model_length(options.model_length),
        "rounds_requested": options.rounds,
        "wall_seconds": round(outcome.wall_seconds, 3),
        "stalled": outcome.stalled,
        "interrupted": outcome.interrupted,
        "refused": outcome.refused,
        "died": outcome.died,
        "failed_rounds": outcome.failed_rounds,
        "peak_rss_mb": outcome.peak_rss_mb,
        "rounds": [
            {
                "round_id": r.round_id,
                "verdict": r.verdict,
                "max_error": r.max_error,
                "tolerance": r.tolerance,
                "phase_seconds": r.phase_seconds,
                "accepted": r.counts,
                "selected": r.selected,
                "updates_known_accepted": r.accepted_updates,
                "dropped": r.dropped,
                "refused": r.refused,
                "bytes_sent": r.bytes_sent,
                "seconds": None if r.finished is None else round(r.finished - r.started, 3),
            }
            for r in outcome.completed
        ],
    }
    with open(options.json_path or os.devnull, "w") as out:
        json.dump(document, out, indent=1)
        out.write("\n")


async def _drive(options: Options, display: Display, outcome: Outcome) -> None:
    drivers = _drivers(options)
    try:
        # Drivers first: the embedded coordinator's first Sum window does not wait for them.
        async with drivers, _coordinator(options) as coordinator, aiohttp.ClientSession() as session:
            await drivers.start(coordinator.url)
            try:
                with display:
                    if drivers.pids():
                        own = f"; coordinator pid {coordinator.pid}" if coordinator.pid else ""
                        pids = ", ".join(str(pid) for pid in drivers.pids())
                        display.note(f"driver processes: pid {pids}{own}")
                    for line in [coordinator.minimums or "", *options.workload.describe()]:
                        if line:
                            display.note(line)
                    await _follow(
                        coordinator.url,
                        session,
                        options=options,
                        display=display,
                        drivers=drivers,
                        outcome=outcome,
                    )
                    if outcome.completed and not outcome.died:
                        await _settle_dropped(drivers, outcome.completed)
            finally:
                where = "remote (-u)" if options.url else "in this process (test_drive)"
                peak = vm_hwm_mb(coordinator.pid) if coordinator.pid is not None else where
                outcome.peak_rss_mb["coordinator"] = peak
                # The clients first: a coordinator stopping while thousands of participants
                # still poll it waits for their requests (its graceful shutdown) before it exits.
                await drivers.stop()
    finally:
        outcome.peak_rss_mb["drivers"] = drivers.peak_rss()


async def _get_json(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
        response.raise_for_status()
        result: dict[str, Any] = json.loads(await response.read())
        return result


async def _follow(
    url: str,
    session: aiohttp.ClientSession,
    *,
    options: Options,
    display: Display,
    drivers: Drivers,
    outcome: Outcome,
) -> None:
    completed = outcome.completed
    by_round: dict[int, RoundRecord] = {}
    last_phase: tuple[int, str] | None = None
    phase_started = time.monotonic()
    last_progress = time.monotonic()
    seen_model_round: int | None = None
    unreachable_since: float | None = None
    seen: tuple[int, str, dict[str, int]] | None = None
    while len(completed) < options.rounds:
        problem = drivers.problem()
        if problem is not None:
            _stop_for(problem, display, outcome)
            return
        if time.monotonic() - last_progress > options.stall_seconds:
            display.note(
                f"no progress (no phase change, no accepted message) for {options.stall_seconds:g} s: stalled"
            )
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
                        record = RoundRecord(params.seed)
                        record.round_id, record.started = round_id, now
                        record.model_length = params.model_length  # the coordinator's, whatever -l said
                        by_round[round_id] = record
                if phase == "error":
                    outcome.failed_rounds += 1
                last_phase, phase_started = (round_id, phase), now
            counts = status.get("counts", {})
            accepted = {k: int(v["accepted"]) for k, v in counts.items()}
            if (round_id, phase, accepted) != seen:  # progress: a phase change or an accepted message
                seen, last_progress = (round_id, phase, accepted), now
            if round_id in by_round:
                by_round[round_id].counts = accepted
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
                    try:
                        tally = await _tally(drivers, record)
                    except RuntimeError as died:
                        _stop_for(("died", str(died)), display, outcome)
                        return
                    await _check(session, url, record, tally, options)
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


async def _settle_dropped(drivers: Drivers, completed: list[RoundRecord]) -> None:
    """Work stopped because its phase ended is known a moment after the round's model appears
    (a participant looks between masks, the drivers' watch every 0.5 s), and so are late
    answers: read the counts (selected, dropped, refused) again until they stop changing (at
    most DROPPED_SETTLE_SECONDS), for the summary."""
    recent = completed[-ROUNDS_KEPT:]
    # selected too: a participant that learns its task after the round's record was taken
    # would otherwise show up among the refused but not among the selected
    previous: list[tuple[dict[str, int], dict[str, int], dict[str, dict[str, int]]]] | None = None
    deadline = time.monotonic() + DROPPED_SETTLE_SECONDS
    while time.monotonic() < deadline:
        try:
            tallies = [RoundTally.combine(r.seed, await drivers.tallies(r.seed)) for r in recent]
        except RuntimeError:
            return  # a driver died meanwhile: keep what the checks saw
        current = [(t.selected, t.dropped, t.refused) for t in tallies]
        if current == previous:
            break
        previous = current
        await asyncio.sleep(1.0)
    for record, (selected, dropped, refused) in zip(recent, previous or [], strict=False):
        record.selected, record.dropped, record.refused = selected, dropped, refused


def _stop_for(problem: tuple[str, str], display: Display, outcome: Outcome) -> None:
    kind, message = problem
    if kind == "refused":
        outcome.refused = message
        display.note(message)
    elif kind == "died":
        outcome.died = message
        display.note(f"{message}: stopping (the rounds checked so far are reported)")
    else:
        outcome.stalled = True
        display.note(f"participants gave up: {message}")


async def _tally(drivers: Drivers, record: RoundRecord) -> RoundTally:
    """The drivers' combined tally, once they know of every update the coordinator accepted
    (an answer can still be on its way to a busy driver when the model is published)."""
    deadline = time.monotonic() + COUNT_WAIT_SECONDS
    while True:
        tally = RoundTally.combine(record.seed, await drivers.tallies(record.seed))
        if len(tally.accepted) >= record.counts.get("update", 0) or time.monotonic() > deadline:
            record.take(tally)
            return tally
        await asyncio.sleep(0.2)


async def _check(
    session: aiohttp.ClientSession, url: str, record: RoundRecord, tally: RoundTally, options: Options
) -> None:
    async with session.get(f"{url}/model") as response:
        body = await response.read()
        served_round = response.headers.get("X-Xaynet-Round")
    if served_round is not None and int(served_round) != record.round_id:
        record.verdict = "unchecked: a newer model replaced it before it was fetched"
        return
    model = GlobalModel.from_bincode(body)
    try:
        error, tolerance = await asyncio.to_thread(options.workload.check, model, tally)
    except ValueError as failure:
        record.verdict = f"unchecked: {failure}"
        return
    record.max_error, record.tolerance = error, tolerance
    record.verdict = "ok" if error <= tolerance else "WRONG"
    aggregated = record.counts.get("update", 0)
    if record.verdict == "WRONG" and record.accepted_updates != aggregated:
        record.verdict = f"WRONG ({record.accepted_updates} of {aggregated} updates known accepted)"
    await asyncio.to_thread(options.workload.evaluate, model, record)
