"""Settings of the coordinator test-drive embeds (in-memory store, fast phases).

The probabilities aim at a handful of sum participants (each derives one mask per update, the
heaviest job: 5 to 10 of them whatever N) and every other participant updating; the minimum
update count sits three standard deviations below the expected number of updaters, so a round
waits for nearly all of them but is not failed by the lottery. The Sum window grows with the
drivers' polling pause, so sum participants that wait between ticks still get in; the model
type is the narrowest that can aggregate every participant.

With `--workers` the coordinator runs in a process of its own (`serve_in_process`), so the
drivers and the coordinator do not share one interpreter lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import pydantic

from xaynet.coordinator.service import running
from xaynet.coordinator.settings import Settings
from xaynet.core.mask.config import BoundType, ModelType
from xaynet.sdk.bounds import bound_name

PHASE_MINIMUMS = (
    "min_sum_time",
    "min_update_time",
    "min_sum2_time",
    "min_sum_count",
    "min_update_count",
    "min_sum2_count",
)


class EmbeddedSettingsError(ValueError):
    """The embedded coordinator cannot be set up for this run: one line saying why."""


def sum_probability(participants: int) -> float:
    """5 expected sum participants (at least 1 %) up to 1,000; beyond, 10 whatever N (each
    derives a mask per update: 1 % of 10,000 would be 100 derivations of 10,000 masks)."""
    return min(0.3, max(5 / participants, min(0.01, 10 / participants)))


def model_type_for(participants: int) -> tuple[str, int]:
    """The narrowest model type that aggregates every participant (a wider one costs more bytes
    per weight): M3 up to 1,000, M6, M9, M12 (10^12, the widest)."""
    for model_type in ModelType:
        capacity = 10 ** int(model_type.name[1:])
        if participants <= capacity:
            return model_type.name, capacity
    raise EmbeddedSettingsError(
        f"{participants:,} participants are more than any model type aggregates (M12: at most "
        f"{10**12:,}): run at most that many"
    )


@dataclass(frozen=True)
class EmbeddedSpec:
    """What the embedded coordinator is built from (picklable, for its own process)."""

    participants: int
    model_length: int
    bound_type: BoundType = BoundType.B0
    poll_maximum: float = 2.0  # the drivers' longest pause between ticks
    minimums: dict[str, float] = field(default_factory=dict)  # user's PHASE_MINIMUMS

    def settings(self) -> Settings:
        return embedded_settings(
            self.participants,
            self.model_length,
            bound_type=self.bound_type,
            poll_maximum=self.poll_maximum,
            minimums=self.minimums,
        )


def embedded_settings(
    participants: int,
    model_length: int,
    port: int = 0,
    bound_type: BoundType = BoundType.B0,
    *,
    poll_maximum: float = 2.0,
    minimums: dict[str, float] | None = None,
) -> Settings:
    """Raises `EmbeddedSettingsError` (one line) for N beyond M12 or inconsistent `minimums`."""
    model_type, capacity = model_type_for(participants)
    p_sum = sum_probability(participants)
    expected_updates = participants * (1 - p_sum)
    spread = math.sqrt(participants * p_sum * (1 - p_sum))
    min_updates = max(3, math.floor(expected_updates - 3 * spread))
    patience = 10 + participants * model_length / 50_000  # seconds a phase may take at most
    # A participant waits up to poll_maximum × 1.5 (jitter) between ticks.
    min_sum_time = 2.5 if poll_maximum <= 2.0 else 2.5 + 1.5 * poll_maximum
    pet: dict[str, Any] = {
        "min_sum_count": 1,
        "max_sum_count": min(max(10, participants), capacity),
        "min_update_count": min_updates,
        "max_update_count": min(participants, capacity),
        "min_sum2_count": 1,
        "max_sum2_count": min(max(10, participants), capacity),
        "min_sum_time": min_sum_time,
        "max_sum_time": max(patience, 4 * min_sum_time),
        "min_update_time": 0.5,
        "max_update_time": patience,
        "min_sum2_time": 0.5,
        "max_sum2_time": patience,
        "sum": p_sum,
        "update": 1.0,
    }
    for key, value in (minimums or {}).items():
        pet[key] = value
        limit = key.replace("min_", "max_")
        if key.endswith("_time"):
            pet[limit] = max(pet[limit], 4 * value)  # the minimum is asked for: let it fit
    try:
        return _validate(pet, bound_type, model_type, model_length, port)
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        raise EmbeddedSettingsError(str(first.get("msg", error)).removeprefix("Value error, ")) from None


def _validate(
    pet: dict[str, Any], bound_type: BoundType, model_type: str, length: int, port: int
) -> Settings:
    return Settings.model_validate(
        {
            "api": {"bind_address": f"127.0.0.1:{port}"},
            "pet": pet,
            "mask": {
                "group_type": "Prime",
                "data_type": "F32",
                "bound_type": bound_name(bound_type),
                "model_type": model_type,
            },
            "model": {"length": length},
            "log": {"filter": "warn"},
        }
    )


def describe_minimums(settings: Settings) -> str:
    """One line: when each phase may end (what `--min-*` options change)."""
    pet = settings.pet
    return (
        f"phases end after at least: sum {pet.min_sum_time:g} s and {pet.min_sum_count} message(s), "
        f"update {pet.min_update_time:g} s and {pet.min_update_count}, sum2 {pet.min_sum2_time:g} s "
        f"and {pet.min_sum2_count} (probabilities: sum {pet.sum:g}, update {pet.update:g}; model type "
        f"{settings.mask.model_type})"
    )


def _serve(conn: Connection, spec: EmbeddedSpec) -> None:
    """The coordinator process: serve until the parent says stop or goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent stops us
    asyncio.run(_serve_until_told(conn, spec.settings()))


async def _serve_until_told(conn: Connection, settings: Settings) -> None:
    async with running(settings, host="127.0.0.1", port=0) as coordinator:
        conn.send(coordinator.url)
        with contextlib.suppress(EOFError, OSError):
            await asyncio.to_thread(conn.recv)  # "stop", or EOF when the parent died


@dataclass
class CoordinatorProcess:
    url: str
    process: multiprocessing.process.BaseProcess

    @property
    def pid(self) -> int | None:
        return self.process.pid


@contextlib.contextmanager
def serve_in_process(spec: EmbeddedSpec, start_timeout: float = 120.0) -> Iterator[CoordinatorProcess]:
    """The embedded coordinator in a spawned process; stopped (then killed) on exit."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(theirs, spec), name="xaynet-coordinator", daemon=True)
    process.start()
    theirs.close()
    try:
        if not ours.poll(start_timeout):
            raise RuntimeError(f"the embedded coordinator did not start within {start_timeout:g} s")
        try:
            url = ours.recv()
        except EOFError:
            exit_code = process.exitcode
            raise RuntimeError(f"the embedded coordinator exited at start (exit {exit_code})") from None
        yield CoordinatorProcess(str(url), process)
    finally:
        with contextlib.suppress(OSError):
            ours.send("stop")
        process.join(30)
        if process.is_alive():
            process.kill()
            process.join(5)
        ours.close()
