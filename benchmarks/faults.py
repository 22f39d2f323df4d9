"""Randomized fault runs against real processes, counted like the fault suite (tests/faults).

Each run starts a fresh bed — redis-server, one or two coordinator processes, the recording
proxy, 5 participants of the reference wheel and 5 of our SDK (2,010 weights: our SDK's
updates and masks are multipart) — injects one fault, and counts from what every participant
was told against the exported global models:

* kill:<phase>  kill -9 of the coordinator at a random point of that phase, restart after
                0–2 s on the same Redis (unmask: aimed at the end of Sum2; the phase the
                restarted coordinator resumed is reported);
* redis:stop    Redis SIGSTOPped for --outage seconds in the middle of an Update phase;
* redis:kill    Redis killed (-9) and started again on its data after --outage seconds;
* failover      two coordinators on one namespace, kill -9 of the lease holder; the time
                until the standby's /status names itself the holder is the takeover time.

Usage: python -m benchmarks faults [--runs 21] [--outage 30] [--seed N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from benchmarks._timing import machine
from tests.faults.harness import FaultBed, Timing, holder_intervals, overlapping

KINDS = ["kill:sum", "kill:update", "kill:sum2", "kill:unmask", "redis:stop", "redis:kill", "failover"]


@dataclass
class RunResult:
    seed: int
    kind: str
    resumed: str = ""
    seconds: float = 0.0
    accepted: int = 0
    updates_accepted: int = 0
    lost: int = 0
    told_wrong: int = 0
    undelivered: int = 0
    senders: int = 0
    finished: int = 0
    takeover: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def run_once(kind: str, seed: int, outage: float, directory: Path) -> RunResult:
    rng = random.Random(seed)
    result = RunResult(seed, kind)
    started = time.monotonic()
    family, _, detail = kind.partition(":")
    timing = Timing(max_time=max(60.0, 3 * outage)) if family == "redis" else Timing()
    failure: str | None = None
    try:
        with FaultBed(directory, rng, coordinators=2 if family == "failover" else 1, timing=timing) as bed:
            try:
                if family == "kill":
                    fault = bed.kill_coordinator(detail, down=rng.uniform(0, 2))
                    result.resumed = str(fault["resumed"])
                elif family == "redis":
                    fault = bed.stop_redis(detail, outage)
                else:
                    fault = bed.kill_holder(rng.choice(["sum", "update", "sum2"]))
                    result.takeover = float(fault["takeover_seconds"])
                accounting = bed.finish()
            except AssertionError as error:  # the round never ended: count what was told anyway
                failure = f"run failed: {error}".splitlines()[0]
                (directory / "error.txt").write_text(traceback.format_exc())
                bed.stop_participants()
                accounting = bed.account()
                fault = bed.faults[-1] if bed.faults else {"round_id": -1}
            assert bed.proxy is not None
            intervals, unnamed = holder_intervals(bed.proxy.records())
    except Exception as error:  # a bed that cannot start or stop is a failed run, not the end
        result.problems.append(f"run failed: {type(error).__name__}: {error}".splitlines()[0])
        (directory / "error.txt").write_text(traceback.format_exc())
        result.seconds = time.monotonic() - started
        return result
    result.seconds = time.monotonic() - started
    result.accepted = accounting.accepted
    result.updates_accepted = accounting.updates_accepted
    result.lost = len(accounting.lost)
    result.told_wrong = len(accounting.lied_to)
    result.undelivered = len(accounting.undelivered)
    result.senders = accounting.senders
    result.finished = accounting.senders_finished
    result.problems = ([failure] if failure else []) + accounting.problems()
    if int(fault["round_id"]) not in accounting.included:
        result.problems.append(f"the faulted round {fault['round_id']} published no global model")
    if family == "failover":
        if result.takeover is not None and result.takeover > 10:
            result.problems.append(f"takeover took {result.takeover:.1f} s (> 10 s)")
        result.problems += [f"two active: {o}" for o in overlapping(intervals)]
        if unnamed:
            result.problems.append(f"{unnamed} accepted answers named no lease holder")
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks faults", description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--outage", type=float, default=30.0, help="seconds Redis stays down")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="keep each run's logs under this folder")
    args = parser.parse_args(argv)
    master = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    seeds = random.Random(master)
    console = Console(width=170)
    console.print(f"machine: {machine()}; master seed {master}; Redis outage {args.outage:g} s")
    results: list[RunResult] = []
    for index in range(args.runs):
        kind = KINDS[index % len(KINDS)]
        seed = seeds.randrange(2**32)
        if args.keep is not None:
            directory = args.keep / f"run-{index:02d}-{kind.replace(':', '-')}"
            directory.mkdir(parents=True)
            result = run_once(kind, seed, args.outage, directory)
        else:
            with tempfile.TemporaryDirectory(prefix="xaynet-faults-") as temporary:
                result = run_once(kind, seed, args.outage, Path(temporary))
        results.append(result)
        verdict = "ok" if result.ok else "FAIL: " + escape("; ".join(result.problems)[:300])
        console.print(
            f"run {index + 1}/{args.runs} {kind} seed={seed} resumed={result.resumed or '-'} "
            f"{result.seconds:.0f} s: accepted {result.accepted} (updates {result.updates_accepted}), "
            f"lost {result.lost}, senders {result.finished}/{result.senders} — {verdict}"
        )
    print_table(console, results)


def print_table(console: Console, results: list[RunResult]) -> None:
    table = Table(title="fault runs")
    columns = ["fault", "runs", "ok", "resumed in", "accepted", "updates", "lost", "told wrong"]
    columns += ["undelivered", "senders finished", "takeover s"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("fault", "resumed in") else "right")
    for kind in [*KINDS, "all"]:
        rows = [r for r in results if kind in ("all", r.kind)]
        if not rows:
            continue
        takeovers = [r.takeover for r in rows if r.takeover is not None]
        resumed: dict[str, int] = {}
        for r in rows:
            if r.resumed:
                resumed[r.resumed] = resumed.get(r.resumed, 0) + 1
        table.add_row(
            kind,
            str(len(rows)),
            str(sum(r.ok for r in rows)),
            ", ".join(f"{k}×{v}" for k, v in sorted(resumed.items())) or "-",
            str(sum(r.accepted for r in rows)),
            str(sum(r.updates_accepted for r in rows)),
            str(sum(r.lost for r in rows)),
            str(sum(r.told_wrong for r in rows)),
            str(sum(r.undelivered for r in rows)),
            f"{sum(r.finished for r in rows)}/{sum(r.senders for r in rows)}",
            f"{statistics.median(takeovers):.1f} / {max(takeovers):.1f}" if takeovers else "-",
        )
    console.print(table)
    console.print("takeover s: median / max.  Failed runs and why:")
    for r in results:
        if not r.ok:
            console.print(f"  {r.kind} seed={r.seed}: " + escape("; ".join(r.problems)[:600]))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
