"""The fault bed: real redis-server, real coordinator processes, the recording proxy, the
reference wheel's and our SDK's participants in their own processes — and the accounting.

A run: start everything, let rounds go, inject a fault (kill -9 a coordinator at a random
point of a phase, stop or kill Redis, kill the lease holder of two coordinators), wait for
the faulted round's global model, wait for every sender to finish, then count from the
proxy's log — what each participant was *told* — against the exported global models, whose
one-hot tails name exactly the updates they aggregated (tests/models.py):

* an update whose sender was told `accepted` must be in its round's model (else: lost);
* a sender must never end a message on `buffered` (a multipart message whose first chunks
  vanished: the sender believes it sent, nobody has it) — lost if it was an update;
* an update that got no verdict before its round ended (coordinator down while it retried)
  and is not in the model is counted as undelivered: nothing was promised, the figure is shown;
* an update in the model must not have been answered `rejected` (its sender was told a lie);
* every global model is exactly the mean of the updates its tail names;
* every sender of a round that published a model fetches it (or a later one): it finished.

Everything is a condition wait with a deadline; the only sleeps are the fault's own random
offset and duration. Randomness comes from one seeded `random.Random` (printed on failure).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import numpy as np

from tests import models
from tests.processes import (
    CoordinatorProcess,
    RedisServer,
    free_port,
    http_get,
    pet_config,
    redis_server,
    wait_until,
)
from xaynet.core.mask.model import GlobalModel

REPO = Path(__file__).resolve().parents[2]
SUM_MESSAGE_SIZE = 280  # a sealed sum message: single part for every client (WIRE.md)
HEAD = 2000  # 2,000 + participants weights: our SDK's updates and masks are 4 chunks each
MESSAGE_PHASES = ("sum", "update", "sum2")
# Each POST /message spends 50–200 ms "on the network": our SDK's 4-chunk updates are in
# flight for ~0.5 s, so a kill at a random moment often cuts one (the case that lost data).
LATENCY_MS = "50,200"
FINAL_RESULTS = {"accepted", "rejected", "discarded", "invalid"}


@dataclass(frozen=True)
class Layout:
    """Who takes part: wheel participants 0..wheel-1, ours wheel..wheel+ours-1."""

    wheel: int = 5
    ours: int = 8  # 13 in all: fewer than 3 updaters in a round (it fails) has p ≈ 0.06 %
    head: int = HEAD

    @property
    def total(self) -> int:
        return self.wheel + self.ours

    @property
    def length(self) -> int:
        return self.head + self.total


@dataclass(frozen=True)
class Timing:
    """Phase minimum times (s) and the common maximum; `max_time` bounds a phase's wait."""

    sum: float = 1.5
    update: float = 2.5
    sum2: float = 1.0
    max_time: float = 60.0

    def minimum(self, phase: str) -> float:
        return float(getattr(self, phase))


# -- the proxy and the participants as processes ------------------------------------------


@dataclass
class ProxyProcess:
    port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]


def _python(module: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # the process owns it
    )


def _terminate(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# -- following the coordinators ----------------------------------------------------------


def params_key(body: bytes) -> str:
    """How the proxy and the monitor name a round's parameters (the same hash)."""
    return hashlib.sha256(body[:136]).hexdigest()[:16]


def lease_of(status: dict[str, Any]) -> tuple[str | None, int | None]:
    """(holder, token) named by a coordinator's `/status`, wherever it puts them."""
    lease = status.get("lease")
    if isinstance(lease, dict):
        holder = lease.get("holder")
        token = lease.get("token")
        return (str(holder) if holder is not None else None, int(token) if token is not None else None)
    holder = status.get("holder") or status.get("lease_holder")
    token = status.get("lease_token") or status.get("token")
    return (str(holder) if holder is not None else None, int(token) if token is not None else None)


def answer_lease(xaynet_headers: dict[str, str]) -> tuple[str | None, str | None]:
    """(holder, token) of an answer, from its `X-Xaynet-*` headers."""
    holder = next((v for k, v in xaynet_headers.items() if "holder" in k), None)
    token = next((v for k, v in xaynet_headers.items() if "token" in k), None)
    return holder, token


class Monitor:
    """Polls every coordinator's `/status` and `/params`: which parameters belong to which
    round (the proxy only sees parameters), and the latest status of each coordinator."""

    def __init__(self, coordinators: list[CoordinatorProcess]) -> None:
        self.coordinators = coordinators
        self.rounds: dict[str, int] = {}
        self.latest: dict[int, tuple[float, dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _poll(self, index: int, coordinator: CoordinatorProcess) -> None:
        code, before = http_get(coordinator.url + "/status", 1)
        if code != 200:
            return
        code, params = http_get(coordinator.url + "/params", 1)
        code_after, after = http_get(coordinator.url + "/status", 1)
        first, second = json.loads(before), json.loads(after)
        self.latest[index] = (time.monotonic(), second)
        same_round = first["round_id"] == second["round_id"] and first["round_id"] > 0
        in_round = first["phase"] in (*MESSAGE_PHASES, "unmask") and second["phase"] == first["phase"]
        if code == 200 and code_after == 200 and same_round and in_round:
            self.rounds.setdefault(params_key(params), int(first["round_id"]))

    def _run(self) -> None:
        while not self._stop.is_set():
            for index, coordinator in enumerate(self.coordinators):
                if coordinator.process is not None and coordinator.process.poll() is None:
                    with contextlib.suppress(OSError, ValueError, KeyError):
                        self._poll(index, coordinator)
            self._stop.wait(0.05)

    def status(self, index: int, fresh: float = 2.0) -> dict[str, Any] | None:
        seen = self.latest.get(index)
        if seen is None or time.monotonic() - seen[0] > fresh:
            return None
        return seen[1]


# -- the accounting -----------------------------------------------------------------------


@dataclass
class Message:
    """What one sender sent in one round, as the proxy saw it."""

    round_id: int
    sender: str
    records: list[dict[str, Any]]

    @property
    def index(self) -> int:
        return int(self.sender[1:])

    @property
    def role(self) -> str:
        return "sum" if any(r["size"] == SUM_MESSAGE_SIZE for r in self.records) else "update"

    @property
    def final(self) -> dict[str, Any]:
        return max(self.records, key=lambda r: r["t1"])

    @staticmethod
    def result(record: dict[str, Any]) -> str:
        return str(record["xaynet"].get("x-xaynet-result", ""))

    @property
    def answered(self) -> bool:
        """Did the sender's last request for this round get a final verdict?"""
        final = self.final
        return final["status"] < 500 and self.result(final) in FINAL_RESULTS

    @property
    def ended_on_buffered(self) -> bool:
        """The sender stopped after `buffered`: it believes the message sent, nobody has it."""
        return self.result(self.final) == "buffered"

    def accepted(self, sum_message: bool | None = None) -> bool:
        return any(
            self.result(r) == "accepted"
            for r in self.records
            if sum_message is None or (r["size"] == SUM_MESSAGE_SIZE) == sum_message
        )

    def describe(self) -> str:
        answers = ", ".join(
            f"{r['size']}B→{r['status']} {self.result(r) or '-'}"
            + (f" ({r['xaynet'].get('x-xaynet-reason')})" if r["xaynet"].get("x-xaynet-reason") else "")
            for r in sorted(self.records, key=lambda r: r["t1"])[-6:]
        )
        return f"{self.sender} round {self.round_id} [{self.role}] last answers: {answers}"


@dataclass
class Accounting:
    layout: Layout
    last_round: int
    messages: list[Message] = field(default_factory=list)
    included: dict[int, set[int]] = field(default_factory=dict)  # round → update senders in its model
    accepted: int = 0  # messages whose sender was told `accepted`
    updates_accepted: int = 0
    lost: list[str] = field(default_factory=list)
    ended_on_buffered: list[str] = field(default_factory=list)
    lied_to: list[str] = field(default_factory=list)
    undelivered: list[str] = field(default_factory=list)  # no verdict, round over, not in the model
    wrong_models: list[str] = field(default_factory=list)
    unmapped: int = 0
    not_moved_on: list[str] = field(default_factory=list)
    driver_errors: dict[str, str] = field(default_factory=dict)

    @property
    def senders(self) -> int:
        return len(self.messages)

    @property
    def senders_finished(self) -> int:
        return self.senders - len(self.not_moved_on) - len(self.ended_on_buffered)

    def problems(self) -> list[str]:
        found = [f"LOST (told accepted, or left at `buffered`, and not in the model): {m}" for m in self.lost]
        found += [
            f"ENDED ON `buffered` (sender stopped, message incomplete): {m}" for m in self.ended_on_buffered
        ]
        found += [
            f"TOLD WRONG (in the model, but its final answer says otherwise): {m}" for m in self.lied_to
        ]
        found += [f"WRONG MODEL: {m}" for m in self.wrong_models]
        found += [f"DID NOT FINISH (never fetched the round's global model): {m}" for m in self.not_moved_on]
        found += [f"PARTICIPANT GAVE UP: {k}: {v}" for k, v in self.driver_errors.items()]
        if self.unmapped:
            found.append(f"{self.unmapped} messages were sent with parameters of no known round")
        return found

    def summary(self) -> str:
        return (
            f"rounds ≤ {self.last_round}: {self.senders} senders, {self.senders_finished} finished; "
            f"{self.accepted} messages told accepted ({self.updates_accepted} updates); "
            f"{len(self.lost)} lost; {len(self.lied_to)} told wrong; "
            f"{len(self.undelivered)} updates undelivered without a verdict (sender moved on); "
            "models checked: " + ", ".join(f"r{r}={len(s)} updates" for r, s in sorted(self.included.items()))
        )


def exact_mean_check(model: GlobalModel, layout: Layout) -> set[int]:
    """`tests.models.check_global_model`, vectorised (that one takes seconds per 2,000-weight
    model): the tail names the aggregated participants, each at exactly 1/n, and the head is
    exactly the mean of their heads. The heads are multiples of 1/8 (exact in F32 and in
    the 1e-10 fixed point), so the mean is (sum of 8·head) / (8n), compared in integers."""
    nums = np.asarray(model.numerators, dtype=object)
    dens = np.asarray(model.denominators, dtype=object)
    head, total = layout.head, layout.total
    included = {i for i in range(total) if nums[head + i] != 0}
    n = len(included)
    assert n >= 3, f"a round needs at least 3 updates, the tail names {sorted(included)}"
    shares = [(int(nums[head + i]), int(dens[head + i])) for i in sorted(included)]
    assert all(num * n == den for num, den in shares), f"tail shares are not 1/{n}: {shares}"
    eighths = np.zeros(head, dtype=object)
    for i in included:
        values = np.asarray(models.local_model(i, head, total)[:head]) * 8
        assert np.all(values == np.round(values)), "the suite's heads must be multiples of 1/8"
        eighths = eighths + values.astype(np.int64).astype(object)
    wrong = np.nonzero(nums[:head] * (8 * n) != eighths * dens[:head])[0]
    assert len(wrong) == 0, (
        f"{len(wrong)} weights differ from the mean of {sorted(included)}, first at {int(wrong[0])}: "
        f"{nums[wrong[0]]}/{dens[wrong[0]]} != {eighths[wrong[0]]}/{8 * n}"
    )
    return included


_CHECKED: dict[str, set[int] | str] = {}  # sha256 of a model body → its check's result


def load_models(exports: list[Path], layout: Layout, upto: int) -> tuple[dict[int, set[int]], list[str]]:
    """Every exported global model up to round `upto`, checked exact; → round → included."""
    included: dict[int, set[int]] = {}
    wrong: list[str] = []
    bodies: dict[int, bytes] = {}
    for directory in exports:
        for path in sorted(directory.glob("global-model-*.bin")):
            round_id = int(path.stem.rsplit("-", 1)[1])
            if round_id > upto:
                continue
            body = path.read_bytes()
            if round_id in bodies and bodies[round_id] != body:
                wrong.append(f"round {round_id} was published twice with different models")
            bodies[round_id] = body
    for round_id, body in sorted(bodies.items()):
        key = hashlib.sha256(body).hexdigest()
        if key not in _CHECKED:
            try:
                _CHECKED[key] = exact_mean_check(GlobalModel.from_bincode(body), layout)
            except AssertionError as error:
                _CHECKED[key] = f"round {round_id}: not the exact mean of the updates it names: {error}"
        checked = _CHECKED[key]
        if isinstance(checked, str):
            wrong.append(checked)
        else:
            included[round_id] = checked
    return included, wrong


def account(
    records: list[dict[str, Any]],
    rounds: dict[str, int],
    exports: list[Path],
    layout: Layout,
    last_round: int,
    driver_errors: dict[str, str] | None = None,
    first_round: int = 0,
) -> Accounting:
    """Count rounds `first_round`..`last_round` (from the first faulted round on: a round that
    failed before any fault — a lottery that drew too few — is the protocol's business);
    every exported model up to `last_round` is checked exact all the same."""
    result = Accounting(layout, last_round, driver_errors=dict(driver_errors or {}))
    result.included, result.wrong_models = load_models(exports, layout, last_round)
    grouped: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if record["kind"] != "message":
            continue
        round_id = rounds.get(record["params"] or "")
        if round_id is None:
            result.unmapped += 1
            continue
        if first_round <= round_id <= last_round:
            grouped[(round_id, record["sender"])].append(record)
    result.messages = [Message(r, s, recs) for (r, s), recs in sorted(grouped.items())]
    fetched: dict[str, int] = {}
    for record in records:
        if record["kind"] == "model" and record["status"] == 200 and record["round"] is not None:
            fetched[record["sender"]] = max(fetched.get(record["sender"], -1), int(record["round"]))
    for message in result.messages:
        if message.role == "sum":
            result.accepted += message.accepted(sum_message=True) + message.accepted(sum_message=False)
        else:
            result.accepted += message.accepted()
            result.updates_accepted += message.accepted()
        if message.ended_on_buffered:
            result.ended_on_buffered.append(message.describe())
        if message.round_id in result.included and fetched.get(message.sender, -1) < message.round_id:
            result.not_moved_on.append(message.describe())
        if message.role != "update":
            continue
        in_model = message.index in result.included.get(message.round_id, set())
        if not in_model and (message.accepted() or message.ended_on_buffered):
            result.lost.append(message.describe())
        elif not in_model and not message.answered:
            result.undelivered.append(message.describe())
        if in_model and message.answered and Message.result(message.final) != "accepted":
            result.lied_to.append(message.describe())
    return result


# -- the bed ------------------------------------------------------------------------------


class FaultBed:
    """Redis, N coordinators on one namespace, the proxy and both kinds of participants."""

    def __init__(
        self,
        directory: Path,
        rng: Random,
        *,
        coordinators: int = 1,
        layout: Layout | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.directory = directory
        self.rng = rng
        self.layout = layout or Layout()
        self.timing = timing or Timing()
        self.count = coordinators
        self.stack = contextlib.ExitStack()
        self.redis: RedisServer | None = None
        self.coordinators: list[CoordinatorProcess] = []
        self.exports: list[Path] = []
        self.proxy: ProxyProcess | None = None
        self.monitor: Monitor | None = None
        self.drivers: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.driver_errors: dict[str, str] = {}
        self.faults: list[dict[str, Any]] = []  # what was injected, when, in which round

    # lifecycle
    def __enter__(self) -> FaultBed:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        redis_dir = self.directory / "redis"
        redis_dir.mkdir()
        self.redis = self.stack.enter_context(redis_server(redis_dir))
        for index in range(self.count):
            self.coordinators.append(self._coordinator(index))
        self.stack.callback(self._stop_coordinators)
        for coordinator in self.coordinators:
            coordinator.start()
        self.monitor = Monitor(self.coordinators)
        self.monitor.start()
        self.stack.callback(self.monitor.stop)
        self.proxy = self._start_proxy()
        self._start_participants()

    def close(self) -> None:
        self.stop_participants()
        self.stack.close()

    def _coordinator(self, index: int) -> CoordinatorProcess:
        home = self.directory / f"coordinator-{index}"
        home.mkdir()
        export = home / "models"
        self.exports.append(export)
        port = free_port()
        assert self.redis is not None
        t = self.timing
        config = pet_config(
            self.layout.length,
            port=port,
            redis_url=self.redis.url,
            namespace="faults",
            export=export,
            times=(t.sum, t.update, t.sum2),
            max_time=t.max_time,
            log_filter="xaynet=info",
        )
        (home / "config.toml").write_text(config)
        return CoordinatorProcess(home / "config.toml", port, home / "coordinator.log")

    def _stop_coordinators(self) -> None:
        for coordinator in self.coordinators:
            with contextlib.suppress(subprocess.TimeoutExpired):
                coordinator.kill(signal.SIGTERM)
            coordinator.kill(signal.SIGKILL)

    def _start_proxy(self) -> ProxyProcess:
        port = free_port()
        log = self.directory / "proxy.jsonl"
        gate = ["--gate"] if self.count > 1 else []
        latency = ["--latency", LATENCY_MS]
        backends = [c.url for c in self.coordinators]
        process = _python(
            "tests.faults.proxy",
            *(str(port), str(log), *gate, *latency, *backends),
            log=self.directory / "proxy.log",
        )
        proxy = ProxyProcess(port, log, process)
        self.stack.callback(_terminate, process)
        wait_until(lambda: http_get(proxy.url + "/_proxy/ping", 1)[0] == 200, 30, "the recording proxy")
        return proxy

    def _start_participants(self) -> None:
        assert self.proxy is not None
        layout = self.layout
        groups = [("wheel", 0, layout.wheel), ("sdk", layout.wheel, layout.ours)]
        for kind, first, count in groups:
            if count == 0:
                continue
            out = self.directory / f"participants-{kind}.json"
            args = [kind, self.proxy.url, *map(str, (first, count, layout.head, layout.total)), str(out)]
            log = self.directory / f"participants-{kind}.log"
            process = _python("tests.faults.participants", *args, log=log)
            self.drivers.append((process, out))

    def stop_participants(self) -> dict[str, str]:
        for process, _ in self.drivers:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, out in self.drivers:
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()
                self.driver_errors[out.name] = "did not stop within 90 s of SIGTERM"
            if out.exists():
                self.driver_errors.update(json.loads(out.read_text())["errors"])
            elif process.returncode not in (0, None):
                self.driver_errors[out.name] = f"exited with {process.returncode} (see its log)"
        self.drivers = []
        return self.driver_errors

    # observing
    def status(self, index: int = 0) -> dict[str, Any]:
        """`/status` of a coordinator; ValueError (which condition waits retry) while it is
        not answering it (starting, restoring)."""
        return status_of(self.coordinators[index])

    def active_index(self) -> int:
        """The coordinator whose `/status` says it holds the lease (one coordinator: 0)."""
        if self.count == 1:
            return 0
        for index, coordinator in enumerate(self.coordinators):
            if coordinator.process is None or coordinator.process.poll() is not None:
                continue
            with contextlib.suppress(OSError, ValueError, AssertionError):
                holder, _ = lease_of(status_of(coordinator))
                if holder is not None and _names(holder, coordinator):
                    return index
        raise LookupError("no coordinator's /status names itself as the lease holder")

    def wait_phase(
        self, phase: str, *, after_round: int = 0, index: int | None = None, poll: float = 0.02
    ) -> dict[str, Any]:
        """Wait for `phase` of a round > `after_round` on the active coordinator."""

        def reached() -> dict[str, Any] | None:
            status = self.status(self.active_index() if index is None else index)
            ok = status["phase"] == phase and int(status["round_id"]) > after_round
            return status if ok else None

        result: dict[str, Any] = wait_until(
            reached, 4 * self.timing.max_time, f"the {phase} phase of a round after {after_round}", poll
        )
        return result

    def random_point(self, phase: str) -> dict[str, Any]:
        """Wait until `phase` runs, then a random moment inside it (unmask: around its start)."""
        index = self.active_index()
        if phase == "unmask":
            # Unmasking takes milliseconds, and /status answers only while it awaits the store:
            # poll tightly from just before Sum2 can end, kill as soon as it is no longer Sum2.
            # Which phase the kill really hit is what the restarted coordinator resumes.
            sum2 = self.wait_phase("sum2", after_round=self._last_faulted(), poll=0.005)
            seen = time.monotonic()
            round_id = sum2["round_id"]

            def has_a_mask_or_ended() -> bool:
                status = self.status(index)
                same = status["phase"] == "sum2" and status["round_id"] == round_id
                return not same or status["counts"]["sum2"]["accepted"] >= 1

            wait_until(has_a_mask_or_ended, 4 * self.timing.max_time, "a mask in Sum2", 0.01)
            time.sleep(max(0.0, seen + self.timing.sum2 - 0.05 - time.monotonic()))

            def left_sum2() -> dict[str, Any] | None:
                status = self.status(index)
                return status if status["phase"] != "sum2" or status["round_id"] != round_id else None

            wait_until(left_sum2, 4 * self.timing.max_time, "the end of Sum2", 0.001)
            return sum2
        status = self.wait_phase(phase, after_round=self._last_faulted())
        time.sleep(self.rng.uniform(0, 0.8 * self.timing.minimum(phase)))  # the fault's random offset
        return status

    def _last_faulted(self) -> int:
        return max((int(f["round_id"]) for f in self.faults), default=0)

    # faults
    def kill_coordinator(self, phase: str, down: float = 0.0, sig: int = signal.SIGKILL) -> dict[str, Any]:
        """kill -9 (or `sig`) the active coordinator at a random point of `phase`, restart it
        on the same Redis after `down` seconds; → what was done, the phase it resumed, its
        exit code, and `rounds_completed` before and after (counters must survive)."""
        status = self.random_point(phase)
        index = self.active_index()
        coordinator = self.coordinators[index]
        offset = coordinator.log_path.stat().st_size
        coordinator.kill(sig)
        killed_at = time.monotonic()
        assert coordinator.process is not None
        exit_code = coordinator.process.returncode
        time.sleep(down)  # the outage's length, part of the fault
        coordinator.start()
        after = wait_until(lambda: self.status(index), 60, "/status of the restarted coordinator")
        fault = {
            "fault": "kill -9 coordinator" if sig == signal.SIGKILL else f"signal {signal.Signals(sig).name}",
            "phase": phase,
            "round_id": int(status["round_id"]),
            "at": killed_at,
            "exit_code": exit_code,
            "resumed": _resumed_phase(coordinator, offset),
            "rounds_completed": [status.get("rounds_completed"), after.get("rounds_completed")],
        }
        self.faults.append(fault)
        return fault

    def stop_redis(self, mode: str, seconds: float) -> dict[str, Any]:
        """SIGSTOP Redis (`stop`) or kill -9 it and start it again on its data (`kill`) for
        `seconds`, at a random point of an Update phase that has accepted an update."""
        assert self.redis is not None
        index = self.active_index()

        def update_with_an_accepted_update() -> dict[str, Any] | None:
            status = self.status(index)
            in_update = status["phase"] == "update" and int(status["round_id"]) > self._last_faulted()
            return status if in_update and status["counts"]["update"]["accepted"] >= 1 else None

        status = wait_until(
            update_with_an_accepted_update, 4 * self.timing.max_time, "an accepted update", 0.02
        )
        time.sleep(self.rng.uniform(0, 0.5 * self.timing.update))  # the fault's random offset
        started = time.monotonic()
        if mode == "stop":
            self.redis.process.send_signal(signal.SIGSTOP)
            time.sleep(seconds)  # the outage itself
            self.redis.process.send_signal(signal.SIGCONT)
        else:
            self.redis.process.kill()
            self.redis.process.wait(10)
            time.sleep(seconds)  # the outage itself
            self.redis.start()
        fault = {"fault": f"redis {mode}", "round_id": int(status["round_id"]), "at": started}
        fault["seconds"] = seconds
        self.faults.append(fault)
        return fault

    def kill_holder(self, phase: str) -> dict[str, Any]:
        """Two coordinators: kill -9 the lease holder at a random point of `phase`, measure
        until the other one's `/status` names itself the holder, then restart the killed one
        (Kubernetes recreates the pod) as the new standby."""
        status = self.random_point(phase)
        index = self.active_index()
        holder, token = lease_of(self.status(index))
        self.coordinators[index].kill(signal.SIGKILL)
        killed_at = time.monotonic()
        survivor = self.coordinators[1 - index]

        def took_over() -> bool:
            new_holder, _ = lease_of(status_of(survivor))
            return new_holder is not None and new_holder != holder and _names(new_holder, survivor)

        wait_until(took_over, 60, "the standby to take the lease over", 0.02)
        takeover = time.monotonic() - killed_at
        self.coordinators[index].start()
        fault = {
            "fault": "kill -9 lease holder",
            "phase": phase,
            "round_id": int(status["round_id"]),
            "at": killed_at,
            "holder": holder,
            "token": token,
            "takeover_seconds": round(takeover, 3),
        }
        self.faults.append(fault)
        return fault

    # the end of a run
    def wait_round_end(self, round_id: int) -> bool:
        """Wait until `round_id` published its model or the coordinators moved past it."""

        def ended() -> bool:
            if any((e / f"global-model-{round_id:08d}.bin").exists() for e in self.exports):
                return True
            self.assert_a_coordinator_runs()
            with contextlib.suppress(LookupError):
                return int(self.status(self.active_index())["round_id"]) > round_id
            return False

        wait_until(ended, 4 * self.timing.max_time, f"round {round_id} to end")
        return any((e / f"global-model-{round_id:08d}.bin").exists() for e in self.exports)

    def assert_a_coordinator_runs(self) -> None:
        """Nobody restarts a coordinator that exits on its own here: if all have, say why."""
        if all(c.process is not None and c.process.poll() is not None for c in self.coordinators):
            last_lines = [
                f"exit code {c.process.returncode if c.process else None}: "
                + " | ".join(c.logs().strip().splitlines()[-3:])[-600:]
                for c in self.coordinators
            ]
            raise AssertionError("every coordinator exited by itself: " + "; ".join(last_lines))

    def account(self) -> Accounting:
        assert self.proxy is not None and self.monitor is not None
        return account(
            self.proxy.records(),
            dict(self.monitor.rounds),
            self.exports,
            self.layout,
            self._last_faulted(),
            self.driver_errors,
            first_round=min((int(f["round_id"]) for f in self.faults), default=0),
        )

    def finish(self, deadline: float = 60.0) -> Accounting:
        """After the last fault: wait for its round, for every sender to finish and fetch the
        model (or the deadline), stop the participants, and count."""
        last = self._last_faulted()
        self.wait_round_end(last)

        def settled() -> bool:
            result = self.account()
            return not result.not_moved_on and not result.ended_on_buffered

        with contextlib.suppress(AssertionError):
            wait_until(settled, deadline, "every sender to finish", 0.5)
        self.stop_participants()
        return self.account()


def status_of(coordinator: CoordinatorProcess) -> dict[str, Any]:
    code, body = http_get(coordinator.url + "/status", 2)
    if code != 200:
        raise ValueError(f"/status answered {code}: {body[:200]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


def _names(holder: str, coordinator: CoordinatorProcess) -> bool:
    """Does a lease holder name this coordinator process (by pid or port)?"""
    assert coordinator.process is not None
    return str(coordinator.process.pid) in holder or str(coordinator.port) in holder


def _resumed_phase(coordinator: CoordinatorProcess, offset: int) -> str:
    """The phase the restarted coordinator says it resumed ("none": the round had ended)."""

    def said() -> str | None:
        text = coordinator.log_path.read_bytes()[offset:].decode(errors="replace")
        for line in text.splitlines():
            if "resuming interrupted round" in line:
                with contextlib.suppress(ValueError):
                    return str(json.loads(line).get("phase", "?"))
                return "?"
            if '"phase sum"' in line or "phase sum" in line:
                return "none"
        return None

    with contextlib.suppress(AssertionError):
        return str(wait_until(said, 10, "the restarted coordinator's first phase line", 0.05))
    return "unknown"


def holder_intervals(records: list[dict[str, Any]]) -> tuple[list[tuple[float, float, str, str]], int]:
    """Per (holder, token) of the `accepted` answers: [first, last] time the proxy got one.
    → intervals sorted by start, and how many accepted answers named no holder/token."""
    spans: dict[tuple[str, str], list[float]] = {}
    unnamed = 0
    for record in records:
        if record["kind"] != "message" or record["xaynet"].get("x-xaynet-result") != "accepted":
            continue
        holder, token = answer_lease(record["xaynet"])
        if holder is None or token is None:
            unnamed += 1
            continue
        span = spans.setdefault((holder, token), [record["t1"], record["t1"]])
        span[0], span[1] = min(span[0], record["t1"]), max(span[1], record["t1"])
    intervals = sorted((a, b, h, t) for (h, t), (a, b) in spans.items())
    return intervals, unnamed


def overlapping(intervals: list[tuple[float, float, str, str]]) -> list[str]:
    """Pairs of different holders/tokens whose accepting intervals overlap (two active)."""
    found = []
    for (_, a1, ah, at), (b0, _, bh, bt) in itertools.pairwise(intervals):
        if b0 <= a1:
            found.append(f"{ah} (token {at}) accepted until {a1:.3f}, {bh} (token {bt}) from {b0:.3f}")
    return found


def report(accounting: Accounting, seed: int, faults: list[dict[str, Any]]) -> str:
    lines = [f"seed={seed} (rerun with XAYNET_FAULT_SEED={seed})", accounting.summary()]
    lines += [f"fault: {json.dumps({k: v for k, v in f.items() if k != 'at'})}" for f in faults]
    lines += accounting.problems()
    return "\n".join(lines)
