"""Two coordinators on one Redis namespace: exactly one is active, the standby takes over
after kill -9 of the active one within seconds, and the round completes exactly.

Everything is real: redis-server, two `xaynet coordinator` processes, participants posting
multipart messages over HTTP to both (as a Service would), re-posting a chunk until it gets a
final answer. Every `accepted` answer names its holder and fencing token: the intervals in
which each holder accepted must not overlap.
"""

from __future__ import annotations

import itertools
import json
import signal
import time
from pathlib import Path

from tests.coordinator.hand_round import HandRound
from tests.processes import (
    CoordinatorProcess,
    coordinator_process,
    free_port,
    http_get,
    pet_config,
    redis_server,
    wait_until,
)

LEASE_TTL = 3.0


def config(port: int, redis_url: str, total: int) -> str:
    return pet_config(
        4 + total,
        port=port,
        redis_url=redis_url,
        namespace="shared",
        sum_prob=0.5,
        min_sum_count=1,
        min_update_count=3,
        min_sum2_count=1,
        times=(0, 0, 0),
        max_time=120,
    )


def role(coordinator: CoordinatorProcess) -> dict[str, object]:
    code, body = http_get(coordinator.url + "/status", timeout=2)
    document = json.loads(body)
    if code == 200:
        return {"role": "holder", **document["lease"]}
    return {"role": document.get("reason"), **(document.get("lease") or {})}


def test_standby_takes_over_after_kill_9_and_the_round_completes_exactly(tmp_path: Path) -> None:
    env = {"XAYNET_REDIS__LEASE_TTL_SECONDS": str(LEASE_TTL)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with redis_server(tmp_path) as redis:
        port_a, port_b = free_port(), free_port()
        with (
            coordinator_process(tmp_path / "a", config(port_a, redis.url, 3), port_a, env) as a,
            coordinator_process(tmp_path / "b", config(port_b, redis.url, 3), port_b, env) as b,
        ):
            roles = wait_until(
                lambda: (r := [role(a), role(b)]) and {x["role"] for x in r} == {"holder", "standby"} and r,
                30,
                "one holder and one standby",
            )
            active, standby = (a, b) if roles[0]["role"] == "holder" else (b, a)
            holder = role(active)
            assert role(standby)["holder"] == holder["holder"], "the standby names the holder"

            killed: list[float] = []

            def kill_active_mid_update(index: int, chunks: int, _who: bytes) -> None:
                # the second update's third chunk: chunks 0-1 went to the active coordinator
                updates_started = sum(1 for x in round_.answers if x.chunk == 0 and x.chunks > 2)
                if not killed and updates_started == 1 and index == 2:
                    active.kill(signal.SIGKILL)
                    killed.append(time.time())

            round_ = HandRound([a.url, b.url], before_chunk=kill_active_mid_update)
            round_id, _ = round_.run()
            assert killed, "the active coordinator was killed during the round"
            new_holder = role(standby)
            assert new_holder["role"] == "holder" and new_holder["token"] > holder["token"]  # type: ignore[operator]

            model = round_.model_of(round_id)
            assert round_.check(model) == {0, 1, 2}, "all three updates, each exactly once"

    # the failover time: from kill -9 to the first `accepted` by the new holder
    by_new = [x.at for x in round_.answers if x.result == "accepted" and x.holder == new_holder["holder"]]
    first_new = min(by_new)
    failover = first_new - killed[0]
    print(f"failover after kill -9: {failover:.2f} s (lease TTL {LEASE_TTL:g} s)")
    assert failover < 10.0

    # no two holders ever accepted in overlapping intervals
    intervals: dict[tuple[str, int], list[float]] = {}
    for answer in round_.answers:
        if answer.result == "accepted":
            assert answer.holder and answer.token, "every accepted answer names its holder and token"
            intervals.setdefault((answer.holder, answer.token), []).append(answer.at)
    spans = sorted((min(times), max(times), key) for key, times in intervals.items())
    assert len({key[0] for _, _, key in spans}) == 2, spans
    for (_, end, key), (start, _, other) in itertools.pairwise(spans):
        assert end < start, f"{key} and {other} accepted in overlapping intervals"


def test_a_paused_holder_that_lost_its_lease_writes_nothing_and_exits(tmp_path: Path) -> None:
    """SIGSTOP the active coordinator past its TTL: the standby takes over; when the old one
    wakes up, its fenced writes fail, it accepts nothing and exits (to restart as a standby)."""
    env = {"XAYNET_REDIS__LEASE_TTL_SECONDS": str(LEASE_TTL)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with redis_server(tmp_path) as redis:
        port_a, port_b = free_port(), free_port()
        with (
            coordinator_process(tmp_path / "a", config(port_a, redis.url, 3), port_a, env) as a,
            coordinator_process(tmp_path / "b", config(port_b, redis.url, 3), port_b, env) as b,
        ):
            roles = wait_until(
                lambda: (r := [role(a), role(b)]) and {x["role"] for x in r} == {"holder", "standby"} and r,
                30,
                "one holder and one standby",
            )
            active, standby = (a, b) if roles[0]["role"] == "holder" else (b, a)
            old_token = role(active)["token"]
            assert active.process is not None
            active.process.send_signal(signal.SIGSTOP)
            taken = wait_until(lambda: (r := role(standby))["role"] == "holder" and r, 30, "the takeover")
            assert taken["token"] > old_token  # type: ignore[operator]
            active.process.send_signal(signal.SIGCONT)
            assert active.process.wait(30) == 1, "the old holder exits once it sees its lease is gone"
            assert "lost the round's lease" in active.logs()
            round_ = HandRound([active.url, standby.url])
            round_id, _ = round_.run()
            assert round_.check(round_.model_of(round_id)) == {0, 1, 2}
            assert {x.holder for x in round_.answers if x.result == "accepted"} == {taken["holder"]}
