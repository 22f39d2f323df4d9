"""One whole round of ours beside one Flower SecAgg+ round, same N and L, interleaved in one run.

Ours: a `xaynet coordinator` process (memory store, or `--store redis` with a real
redis-server) from a config written here, driven by `xaynet test-drive -u URL` as a
subprocess, which checks the global model against the mean of exactly the models the round
aggregated. Once chunked (the mobile default, 3,912 B per POST) and once unchunked
(`--max-message-size 0`). The number of sum participants S is fixed (min = max sum count = S,
min = max Sum2 count = S; `pet.sum` high enough that at least S are drawn, the extra ones are
turned away) because Sum2 costs S × N mask derivations. Phase minimum times are 0: each phase
ends as soon as its count is reached.

Timed for ours: the coordinator's own phase clock for the measured round (`/status`
`last_round.phase_seconds`), Sum start → Update → Sum2 → Unmask → global model published, summed.
The measured round is the last one test-drive checked, after `--warmup-rounds` (default 1):
round 1's Sum phase starts when the coordinator does, before test-drive has even started its
participants, and warm-up also loads the drivers' compiled mask kernel (Flower has none). Also
timed: CPU seconds of the coordinator and of test-drive's process tree per phase (sampled from
/proc at each phase change seen on /status; a Redis server's CPU is not counted).

Flower: `benchmarks.flower_peer` (Flower's own SecAgg+ server workflow and client mod, N
clients in this process behind an in-memory protobuf grid), whole round = the workflow call,
setup stage to unmasked aggregate, all clients' compute included (as all our participants'
compute is included in ours: drivers and coordinator share this machine's cores).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks import flower_peer
from benchmarks._timing import machine
from tests.processes import coordinator_process, free_port, http_get, redis_server
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE

PHASES = ("sum", "update", "sum2", "unmask")
#: Standard deviations of the sum-participant draw kept on either side: the Sum phase gets its S
#: with odds ≈ 0.999, and the Update minimum sits below the updater count with odds ≈ 0.999 (else
#: the round is redrawn and the next one measured). The Update phase ends at that minimum, so the
#: updaters beyond it (≈ 3 σ of the draw, ~1 % at N = 1000) arrive too late: the table prints how
#: many updates the measured round aggregated.
SIGMAS = 3.0


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGINT (test-drive then stops its drivers and prints what finished), SIGKILL if it lingers."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def sum_probability(participants: int, sum_participants: int) -> float:
    """The smallest `pet.sum` (in steps of 0.001) whose draw falls below S only at 3 σ, leaving
    at least 3 updaters (the coordinator's floor) at the draw's upper 3 σ; else one line."""
    for step in range(1, 1000):
        p = step / 1000
        mean = participants * p
        if mean - SIGMAS * math.sqrt(mean * (1 - p)) >= sum_participants:
            if participants - _most_drawn(participants, p) >= 3:
                return p
            break
    raise SystemExit(
        f"{participants} participants cannot reliably draw {sum_participants} sum participants and "
        "3 updaters: lower -s or raise -n"
    )


def _most_drawn(participants: int, p_sum: float) -> int:
    mean = participants * p_sum
    return math.ceil(mean + SIGMAS * math.sqrt(mean * (1 - p_sum)))


def min_update_count(participants: int, p_sum: float) -> int:
    """Updaters are everyone not drawn for Sum: wait for all but the draw's 3 σ upper tail."""
    return max(3, participants - _most_drawn(participants, p_sum))


def config_toml(
    participants: int,
    length: int,
    sum_participants: int,
    *,
    port: int,
    redis_url: str | None,
    patience: float,
) -> str:
    p_sum = sum_probability(participants, sum_participants)
    model_type = "M3" if participants <= 1000 else "M6"
    redis = f'[redis]\nurl = "{redis_url}"\nnamespace = "bench"\n' if redis_url else ""
    return f"""[log]
filter = "warn"
[api]
bind_address = "127.0.0.1:{port}"
[pet]
min_sum_count = {sum_participants}
max_sum_count = {sum_participants}
min_update_count = {min_update_count(participants, p_sum)}
max_update_count = {participants}
min_sum2_count = {sum_participants}
max_sum2_count = {sum_participants}
min_sum_time = 0
max_sum_time = {patience:g}
min_update_time = 0
max_update_time = {patience:g}
min_sum2_time = 0
max_sum2_time = {patience:g}
sum = {p_sum}
update = 1.0
[mask]
group_type = "Prime"
data_type = "F32"
bound_type = "B0"
model_type = "{model_type}"
[model]
length = {length}
{redis}"""


@dataclass
class OursRound:
    label: str
    max_message_size: int
    ok: bool = False
    failure: str = ""
    phase_seconds: dict[str, float] = field(default_factory=dict)
    sum_participants: int = 0
    updates: int = 0
    coordinator_peak_mb: float = math.nan
    cpu_seconds: dict[str, tuple[float, float]] = field(default_factory=dict)  # phase → coordinator, drivers
    # from `test-drive --json`, when this checkout's test-drive has it
    updaters_drawn: int | None = None
    max_error: float | None = None
    tolerance: float | None = None
    drivers_peak_mb: float | None = None  # summed over test-drive's driver processes

    @property
    def cpu_total(self) -> float:
        """CPU seconds of coordinator and test-drive over the phases seen (Redis not counted)."""
        return sum(coordinator + drivers for coordinator, drivers in self.cpu_seconds.values())

    @property
    def whole_seconds(self) -> float:
        if not self.ok:
            return math.nan
        return sum(self.phase_seconds.get(phase, 0.0) for phase in PHASES)


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _tree(root: int) -> list[int]:
    """`root` and every live descendant (test-drive's worker processes)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


@dataclass
class PhaseClock:
    """Follows `/status` from a thread; at each phase change notes the CPU seconds spent so far by
    the coordinator and by test-drive's process tree, so each phase's CPU can be split by side.

    Sampling every 0.2 s blurs the boundaries by that much; the phase *durations* reported come
    from the coordinator's own clock, only the CPU split from here.
    """

    url: str
    coordinator_pid: int
    drivers_pid: int | None = None
    marks: list[tuple[int, str, float, float]] = field(default_factory=list)  # round, phase, cpu c/d
    completed: dict[int, dict[str, Any]] = field(default_factory=dict)  # round id → its `last_round`
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _drivers_cpu(self) -> float:
        if self.drivers_pid is None:
            return 0.0
        return sum(_cpu_seconds(pid) for pid in _tree(self.drivers_pid))

    def _follow(self) -> None:
        last: tuple[int, str] | None = None
        while not self._stop.wait(0.2):
            with contextlib.suppress(OSError, ValueError, KeyError):
                code, body = http_get(self.url + "/status", 5)
                if code != 200:
                    continue
                status = json.loads(body)
                finished = status.get("last_round")
                if isinstance(finished, dict):
                    self.completed[int(finished["round_id"])] = finished
                now = (int(status["round_id"]), str(status["phase"]))
                if now != last:
                    cpu = (_cpu_seconds(self.coordinator_pid), self._drivers_cpu())
                    self.marks.append((*now, *cpu))
                    last = now

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(OSError, ValueError):
            code, body = http_get(self.url + "/status", 5)
            finished = json.loads(body).get("last_round") if code == 200 else None
            if isinstance(finished, dict):
                self.completed[int(finished["round_id"])] = finished

    def cpu_by_phase(self, round_id: int) -> dict[str, tuple[float, float]]:
        """Phase → (coordinator CPU s, drivers CPU s) within the round, where both ends were seen."""
        split: dict[str, tuple[float, float]] = {}
        for here, after in itertools.pairwise(self.marks):
            if here[0] == round_id and here[1] in PHASES:
                split[here[1]] = (after[2] - here[2], after[3] - here[3])
        return split


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def test_drive_options() -> set[str]:
    """The options this checkout's `xaynet test-drive` has (`--workers`, `--json` are recent)."""
    shown = subprocess.run(
        [sys.executable, "-m", "xaynet", "test-drive", "--help"], capture_output=True, text=True, check=True
    ).stdout
    return {option for option in ("--workers", "--json") if option in shown}


def run_ours(
    label: str,
    *,
    participants: int,
    length: int,
    sum_participants: int,
    max_message_size: int,
    store: str,
    warmup_rounds: int,
    workers: int | None,
    patience: float,
) -> OursRound:
    result = OursRound(label, max_message_size)
    options = test_drive_options()
    with tempfile.TemporaryDirectory(prefix="bench-round-") as tmp, ExitStack() as stack:
        directory = Path(tmp)
        redis_url = None
        if store == "redis":
            (directory / "redis").mkdir()
            redis_url = stack.enter_context(redis_server(directory / "redis")).url
        port = free_port()
        text = config_toml(
            participants, length, sum_participants, port=port, redis_url=redis_url, patience=patience
        )
        coordinator = stack.enter_context(coordinator_process(directory, text, port))
        assert coordinator.process is not None
        command = [
            sys.executable, "-m", "xaynet", "test-drive", "-u", coordinator.url,
            "-n", str(participants), "-l", str(length), "--rounds", str(1 + warmup_rounds),
            "--max-message-size", str(max_message_size), "--stall-seconds", f"{patience:g}",
        ]  # fmt: skip
        if workers is not None and "--workers" in options:
            command += ["--workers", str(workers)]
        summary = directory / "test-drive.json"
        if "--json" in options:
            command += ["--json", str(summary)]
        clock = PhaseClock(coordinator.url, coordinator.process.pid)
        clock.start()
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as drive:
            clock.drivers_pid = drive.pid
            try:
                output, _ = drive.communicate()
            except BaseException:  # Ctrl-C or a kill of this process only: no orphaned test-drive
                _stop(drive)
                raise
        clock.stop()
        result.coordinator_peak_mb = _peak_rss_mb(coordinator.process.pid)
        if drive.returncode != 0:
            tail = output.strip().splitlines()[-3:]
            result.failure = f"test-drive exited {drive.returncode}: " + " | ".join(tail)
            return result
        # The measured round is the last one test-drive checked; its participants may complete
        # another round while test-drive stops, so the coordinator's latest is not necessarily it.
        report = json.loads(summary.read_text()) if summary.exists() else {}
        checked = (report.get("rounds") or [{}])[-1].get("round_id")
        measured = checked if isinstance(checked, int) else max(clock.completed, default=None)
        last = clock.completed.get(measured) if measured is not None else None
        if last is None:
            result.failure = f"round {measured} completed unseen by /status (polled every 0.2 s)"
            return result
        result.ok = True
        result.phase_seconds = {k: float(v) for k, v in last["phase_seconds"].items()}
        result.sum_participants = int(last["sum_participants"])
        result.updates = int(last["models_aggregated"])
        result.cpu_seconds = clock.cpu_by_phase(int(last["round_id"]))
        if report:
            _read_summary(result, report)
    return result


def _read_summary(result: OursRound, summary: dict[str, Any]) -> None:
    """What test-drive's `--json` adds for the measured round (its last checked one): updaters
    drawn, the check's error, the drivers' memory."""
    measured = (summary.get("rounds") or [{}])[-1]
    if measured.get("accepted", {}).get("update") == result.updates:
        drawn = measured.get("selected", {}).get("update")
        result.updaters_drawn = int(drawn) if isinstance(drawn, int) else None
        if isinstance(measured.get("max_error"), float | int):
            result.max_error, result.tolerance = float(measured["max_error"]), float(measured["tolerance"])
    drivers = summary.get("peak_rss_mb", {}).get("drivers")
    if isinstance(drivers, list) and all(isinstance(mb, float | int) for mb in drivers):
        result.drivers_peak_mb = float(sum(drivers))
    elif isinstance(drivers, float | int):
        result.drivers_peak_mb = float(drivers)


def _ratio(whole: float, cpu: float, flower: flower_peer.FlowerRound) -> str:
    """Wall-time ratio, and in brackets the CPU-time ratio (steadier when others load the machine)."""
    return f"{whole / flower.whole_seconds:.2f}× ({cpu / flower.cpu_seconds:.2f}×)"


def _phase_cell(r: OursRound, phase: str) -> str:
    """A phase's wall time, and where seen the CPU seconds coordinator / test-drive spent in it."""
    text = f"{r.phase_seconds.get(phase, 0.0):.1f}"
    if phase in r.cpu_seconds:
        coordinator, drivers = r.cpu_seconds[phase]
        text += f" ({coordinator:.1f} / {drivers:.1f})"
    return text


def print_tables(
    participants: int, length: int, ours: list[OursRound], flower: list[flower_peer.FlowerRound]
) -> None:
    console = Console(width=160)
    table = Table(
        title=f"One round: ours beside Flower SecAgg+ (N = {participants:,}, L = {length:,}); "
        "ratios: wall (CPU)"
    )
    ratios = [f"÷ Flower k={f.num_shares}" for f in flower]
    for column in ("run", "whole round s", "CPU s", *ratios, "aggregated", "check"):
        table.add_column(column, justify="left" if column in ("run", "check") else "right")
    for r in ours:
        ratios = [_ratio(r.whole_seconds, r.cpu_total, f) if r.ok else "—" for f in flower]
        check = "exact (test-drive)" if r.ok else f"FAILED: {r.failure}"
        if r.ok and r.max_error is not None:
            check += f", max error {r.max_error:.1e} ≤ {r.tolerance:.1e}"
        aggregated = f"{r.updates:,}"
        if r.updaters_drawn is not None:
            aggregated += f" of {r.updaters_drawn:,} drawn"
        cpu = f"{r.cpu_total:.1f}" if r.ok else "—"
        table.add_row(r.label, f"{r.whole_seconds:.1f}", cpu, *ratios, aggregated, check)
    for f in flower:
        check = "mean ok" if f.correct else f"WRONG: max error {f.max_error:.1e} > {f.tolerance:.1e}"
        ratios = ["1.00×" if g is f else _ratio(f.whole_seconds, f.cpu_seconds, g) for g in flower]
        table.add_row(
            f"Flower SecAgg+ k={f.num_shares}, t={f.threshold}",
            f"{f.whole_seconds:.1f}",
            f"{f.cpu_seconds:.1f}",
            *ratios,
            f"{f.participants:,}",
            check,
        )
    console.print(table)
    if ours:
        phases = Table(title="Ours per phase: wall s (CPU s of the coordinator / of test-drive's processes)")
        for column in ("run", *PHASES, "sum participants", "peak MB coordinator / test-drive"):
            phases.add_column(column, justify="left" if column == "run" else "right")
        for r in ours:
            if r.ok:
                cells = [_phase_cell(r, phase) for phase in PHASES]
                drivers = "—" if r.drivers_peak_mb is None else f"{r.drivers_peak_mb:.0f}"
                memory = f"{r.coordinator_peak_mb:.0f} / {drivers}"
                phases.add_row(r.label, *cells, str(r.sum_participants), memory)
        console.print(phases)
    if flower:
        parts = Table(title="Flower per role: server = whole − clients − protobuf; per client = median")
        for column in ("run", "server s", "protobuf s", "client mask ms", "client all stages ms"):
            parts.add_column(column, justify="left" if column == "run" else "right")
        for f in flower:
            parts.add_row(
                f"Flower SecAgg+ k={f.num_shares}, t={f.threshold}",
                f"{f.server_seconds:.1f}",
                f"{f.serialise_seconds:.1f}",
                f"{f.client_mask_seconds * 1e3:.1f}",
                f"{f.client_seconds * 1e3:.1f}",
            )
        console.print(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks round", description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--participants", type=int, default=1000)
    parser.add_argument("-l", "--model-length", type=int, default=100_000)
    parser.add_argument(
        "-s", "--sum-participants", type=int, default=5, help="fixed sum participant count S (default: 5)"
    )
    parser.add_argument("--store", choices=("memory", "redis"), default="memory")
    parser.add_argument("--warmup-rounds", type=int, default=1, help="rounds before the measured one")
    parser.add_argument("--workers", type=int, default=None, help="test-drive --workers (when it has it)")
    parser.add_argument("--skip-flower", action="store_true", help="ours only, even with flwr installed")
    parser.add_argument(
        "--num-shares", type=int, nargs="+", default=[3, 11], help="Flower's k (default: 3 11)"
    )
    parser.add_argument("--patience", type=float, default=900.0, help="max phase time and stall limit, s")
    args = parser.parse_args(argv)
    n, length, s = args.participants, args.model_length, args.sum_participants
    if n < 3 or length < 1 or s < 1 or args.warmup_rounds < 0:
        raise SystemExit("need -n ≥ 3, -l ≥ 1, -s ≥ 1 and --warmup-rounds ≥ 0")
    p_sum = sum_probability(n, s)  # stops with one line when N cannot draw S
    if args.store == "redis" and shutil.which("redis-server") is None:
        raise SystemExit("--store redis needs redis-server on PATH (apt-get install -y redis-server)")
    with_flower = not args.skip_flower and flower_peer.available()
    if not args.skip_flower and not with_flower:
        print("flwr is not installed (pip install -e '.[flower]'): ours only")

    def run_mine(label: str, size: int) -> OursRound:
        print(f"running {label} ...", flush=True)
        return run_ours(
            label,
            participants=n,
            length=length,
            sum_participants=s,
            max_message_size=size,
            store=args.store,
            warmup_rounds=args.warmup_rounds,
            workers=args.workers,
            patience=args.patience,
        )

    def run_flower(k: int) -> flower_peer.FlowerRound:
        print(f"running Flower SecAgg+ k={k} ...", flush=True)
        return flower_peer.run_round(n, length, k)

    # Interleaved (ours, Flower, ours, Flower): a slow spell on the shared machine hits
    # neighbours, not one side.
    shares = list(args.num_shares) if with_flower else []
    ours = [run_mine(f"ours, chunked {DEFAULT_MAX_MESSAGE_SIZE:,} B", DEFAULT_MAX_MESSAGE_SIZE)]
    flower = [run_flower(k) for k in shares[:1]]
    ours.append(run_mine("ours, one message per update", 0))
    flower += [run_flower(k) for k in shares[1:]]

    print(
        f"\nN = {n:,} participants, L = {length:,} float32 weights; {machine()}\n"
        f"ours: store {args.store}; S = {s} sum participants (pet.sum = {p_sum}, extra draws turned "
        f"away); Update ends at {min_update_count(n, p_sum):,} updates; min phase times 0 s; measured "
        f"round {1 + args.warmup_rounds} of {1 + args.warmup_rounds}; Prime/F32/B0/"
        f"{'M3' if n <= 1000 else 'M6'}"
    )
    print_tables(n, length, ours, flower)
    if any(not r.ok for r in ours) or any(not f.correct for f in flower):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
