"""Two operator replicas: exactly one acts (the Lease holder); kill it and the other takes over.

Real operator processes against the emulated API; each writes its own log, so the test can
tell which one acted. The failover time is measured and checked against what the Lease
settings promise: a standby takes over once the holder's record has not changed for the
lease duration, at its next try (every duration/6), and then reconciles at once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from tests.operator.cluster import LEASE_SECONDS, NAMESPACE, Cluster, cluster, round_manifest
from tests.processes import free_port, http_get, wait_until

ACQUIRED = "acquired the Lease"


def _holder(k8s: Cluster, logs: dict[str, subprocess.Popen[bytes]]) -> str:
    acting = [log for log in logs if ACQUIRED in k8s.operator_log(log)]
    assert len(acting) <= 1, f"two replicas acquired the Lease: {acting}"
    return acting[0] if acting else ""


def _metrics(port: int) -> dict[str, float]:
    """The operator's own /metrics, as `name{labels}` → value."""
    code, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    samples = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def _generation_reconciled(k8s: Cluster, name: str, generation: int) -> bool:
    found = k8s.get("federatedround", name)
    return bool(found and (found.get("status") or {}).get("observedGeneration") == generation)


def test_ha_exactly_one_replica_acts_and_the_other_takes_over(tmp_path: Path) -> None:
    with cluster(tmp_path, operator=False) as k8s:
        ports = {f"operator-{n}.log": free_port() for n in (1, 2)}
        logs = {
            log: k8s.start_operator("--metrics-port", str(port), log_name=log) for log, port in ports.items()
        }
        active_log = wait_until(lambda: _holder(k8s, logs), 60, "one replica to acquire the Lease")
        standby_log = next(log for log in logs if log != active_log)

        k8s.apply(round_manifest("twice"))
        first = k8s.reconciled("twice")
        events = k8s.round_events_with("twice", "ChildCreated", "PhaseChanged")
        created = Counter(e["message"] for e in events if e["reason"] == "ChildCreated")
        assert created and set(created.values()) == {1}, f"events doubled: {created}"
        phases = [e["message"] for e in events if e["reason"] == "PhaseChanged"]
        assert phases == ["New -> Provisioning"], phases
        assert "standing by" in k8s.operator_log(standby_log)
        assert "Handler 'trigger'" not in k8s.operator_log(standby_log), "the standby handled an event"
        assert _holder(k8s, logs) == active_log
        provisioning = 'xaynet_operator_rounds{phase="Provisioning"}'
        # the gauge follows the reconcile's status patch and events: wait for it, do not race it
        active = wait_until(
            lambda: (m := _metrics(ports[active_log])).get(provisioning) == 1 and m, 30, "the rounds gauge"
        )
        standby = _metrics(ports[standby_log])
        assert (active["xaynet_operator_leader"], standby["xaynet_operator_leader"]) == (1, 0)
        assert active['xaynet_operator_reconciles_total{trigger="event"}'] >= 1
        assert not any(key.startswith("xaynet_operator_reconciles_total") for key in standby)

        logs[active_log].send_signal(signal.SIGKILL)
        logs[active_log].wait(30)
        killed = time.monotonic()
        k8s.kubectl(
            "patch", "federatedround", "twice", "--type=merge", "-p", json.dumps({"spec": {"suspend": True}})
        )
        generation = first["metadata"]["generation"] + 1
        promised = LEASE_SECONDS + LEASE_SECONDS / 6 + 30  # + one reconcile on a busy machine
        wait_until(
            lambda: _generation_reconciled(k8s, "twice", generation), promised, "the standby to take over"
        )
        failover = time.monotonic() - killed
        print(f"failover after kill -9 of the active replica: {failover:.1f}s (lease {LEASE_SECONDS}s)")
        assert f"{ACQUIRED} {NAMESPACE}/xaynet-operator (expired)" in k8s.operator_log(standby_log)
        assert failover >= LEASE_SECONDS * 0.9, "the standby waited for the Lease to expire"
        deployment = k8s.get("deployment", "twice-coordinator")
        assert deployment is not None and deployment["spec"]["replicas"] == 0
        created_after = Counter(
            e["message"] for e in k8s.round_events("twice") if e["reason"] == "ChildCreated"
        )
        assert created_after == created, "the new holder re-created nothing"


def test_ha_a_replica_stopped_cleanly_hands_over_at_once(tmp_path: Path) -> None:
    """SIGTERM (a rollout, a drain): the holder releases the Lease, the standby need not wait."""
    with cluster(tmp_path, operator=False) as k8s:
        logs = {f"operator-{n}.log": k8s.start_operator(log_name=f"operator-{n}.log") for n in (1, 2)}
        active_log = wait_until(lambda: _holder(k8s, logs), 60, "one replica to acquire the Lease")
        standby_log = next(log for log in logs if log != active_log)
        # a holder that is up (a SIGTERM during kopf's own startup kills the process before it
        # could release anything: the Lease then expires, as after kill -9)
        k8s.apply(round_manifest("handed"))
        k8s.reconciled("handed")
        stopped = time.monotonic()
        k8s.stop_operator(signal.SIGTERM, logs[active_log])
        wait_until(lambda: ACQUIRED in k8s.operator_log(standby_log), 60, "the standby to acquire the Lease")
        handover = time.monotonic() - stopped
        print(f"handover after SIGTERM of the active replica: {handover:.1f}s (lease {LEASE_SECONDS}s)")
        assert f"{ACQUIRED} {NAMESPACE}/xaynet-operator (released by its holder)" in k8s.operator_log(
            standby_log
        ), "a released Lease is taken without waiting for it to expire"
