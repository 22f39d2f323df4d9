"""The one level-triggered reconcile: what a user sees after edits and operator restarts.

Real kopf operator, real kubectl, the emulated API; a stand-in coordinator process where a
round must produce models. Every test waits for `status.observedGeneration` to reach the
generation it edited (never for a fixed time) and checks that the round, status included,
validates against the CRD's structural schema.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tests.operator.cluster import (
    EXAMPLE,
    Cluster,
    assert_valid_round,
    children,
    cluster,
    round_manifest,
    stand_in_coordinator,
)
from tests.processes import http_get, redis_server, run_test_drive, wait_until

FAST_PET = {
    **EXAMPLE["spec"]["pet"],
    "minSumTime": 1,
    "minUpdateTime": 1,
    "minSum2Time": 0.5,
    "maxSumTime": 30,
    "maxUpdateTime": 30,
    "maxSum2Time": 30,
    "sumProbability": 0.3,
}


def _patch(k8s: Cluster, name: str, spec: dict[str, Any]) -> int:
    """Merge-patch the spec as a user would; return the generation to wait for."""
    k8s.kubectl("patch", "federatedround", name, "--type=merge", "-p", json.dumps({"spec": spec}))
    found = k8s.get("federatedround", name)
    assert found is not None
    return int(found["metadata"]["generation"])


def _conditions(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in found["status"]["conditions"]}


def _assert_current(found: dict[str, Any], status_only: bool = False) -> None:
    """No stale condition: each one observed the generation the status says it observed."""
    generation = found["metadata"]["generation"]
    assert found["status"]["observedGeneration"] == generation
    stale = {
        t: c["observedGeneration"]
        for t, c in _conditions(found).items()
        if c["observedGeneration"] != generation
    }
    assert stale == {}, f"conditions of an older generation than {generation}: {stale}"
    assert_valid_round(found, status_only)


def _config(k8s: Cluster, name: str) -> dict[str, Any]:
    found = k8s.get("configmap", f"{name}-coordinator-config")
    assert found is not None
    return tomllib.loads(found["data"]["config.toml"])


def _replicas(k8s: Cluster, name: str) -> int:
    found = k8s.get("deployment", f"{name}-coordinator")
    assert found is not None
    return int(found["spec"]["replicas"])


def _coordinator_status(url: str) -> dict[str, Any]:
    code, body = http_get(url + "/status")
    assert code == 200
    found: dict[str, Any] = json.loads(body)
    return found


def _reasons(k8s: Cluster, name: str) -> list[str]:
    return [event["reason"] for event in k8s.round_events(name)]


def test_reconcile_suspend_and_resume_agree_with_the_replicas(tmp_path: Path) -> None:
    with cluster(tmp_path) as k8s:
        k8s.apply(round_manifest("pause"))
        _assert_current(k8s.reconciled("pause"))
        assert _replicas(k8s, "pause") == 1

        generation = _patch(k8s, "pause", {"suspend": True})
        suspended = k8s.reconciled("pause")
        assert suspended["metadata"]["generation"] == generation
        _assert_current(suspended)
        conditions = _conditions(suspended)
        assert (conditions["Suspended"]["status"], conditions["Suspended"]["reason"]) == ("True", "Suspended")
        assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == ("False", "Suspended")
        assert suspended["status"]["phase"] == "Suspended"
        assert _replicas(k8s, "pause") == 0

        _patch(k8s, "pause", {"suspend": False})
        resumed = k8s.reconciled("pause")
        _assert_current(resumed)
        assert _conditions(resumed)["Suspended"]["status"] == "False"
        assert resumed["status"]["phase"] == "Provisioning"  # no coordinator answers in this cluster
        assert _replicas(k8s, "pause") == 1
        assert k8s.round_events_with("pause", "PhaseChanged")


def test_reconcile_fixing_an_invalid_spec_clears_failed(tmp_path: Path) -> None:
    with cluster(tmp_path) as k8s:
        manifest = round_manifest("oops")
        manifest["spec"]["pet"] = {**manifest["spec"]["pet"], "sumProbability": 1.5}
        k8s.apply(manifest)
        failed = k8s.reconciled("oops")
        _assert_current(failed, status_only=True)
        assert failed["status"]["phase"] == "Failed"
        condition = _conditions(failed)["Failed"]
        assert (condition["status"], condition["reason"]) == ("True", "InvalidSpec")
        assert "spec.pet.sumProbability" in condition["message"]
        assert children(k8s, "oops") == {}

        _patch(k8s, "oops", {"pet": {"sumProbability": 0.5}})
        fixed = k8s.reconciled("oops")
        _assert_current(fixed)
        condition = _conditions(fixed)["Failed"]
        assert (condition["status"], condition["reason"]) == ("False", "SpecValid")
        assert fixed["status"]["phase"] == "Provisioning"
        assert "Deployment/oops-coordinator" in children(k8s, "oops")
        events = {e["reason"]: e for e in k8s.round_events_with("oops", "InvalidSpec", "SpecValid")}
        assert events["InvalidSpec"]["type"] == "Warning"
        assert "spec.pet.sumProbability" in events["InvalidSpec"]["message"]
        assert events["SpecValid"]["type"] == "Normal"


def test_reconcile_restart_after_a_refused_unsafe_change_keeps_the_applied_value(tmp_path: Path) -> None:
    with cluster(tmp_path) as k8s:
        k8s.apply(round_manifest("keep"))
        _assert_current(k8s.reconciled("keep"))
        assert _config(k8s, "keep")["model"]["length"] == 4

        _patch(k8s, "keep", {"modelLength": 99})
        refused = k8s.reconciled("keep")
        _assert_current(refused)
        condition = _conditions(refused)["SpecChangeRefused"]
        assert (condition["status"], condition["reason"]) == ("True", "UnsafeChange")
        assert "spec.modelLength" in condition["message"]

        _patch(k8s, "keep", {"pet": {"sumProbability": 0.25}})
        k8s.reconciled("keep")
        config = _config(k8s, "keep")
        assert (config["pet"]["sum"], config["model"]["length"]) == (0.25, 4), "safe changes still roll out"

        k8s.stop_operator(signal.SIGKILL)
        k8s.start_operator()
        _patch(k8s, "keep", {"pet": {"sumProbability": 0.3}})  # proves the new operator reconciled
        after = k8s.reconciled("keep", timeout=90)
        _assert_current(after)
        config = _config(k8s, "keep")
        assert config["pet"]["sum"] == 0.3
        assert config["model"]["length"] == 4, "the refused change is not rolled out by a restart"
        assert after["status"]["appliedSpec"]["modelLength"] == 4
        assert _conditions(after)["SpecChangeRefused"]["status"] == "True"
        refusals = [e for e in k8s.round_events_with("keep", "UnsafeChange") if e["reason"] == "UnsafeChange"]
        assert len(refusals) == 1 and refusals[0]["type"] == "Warning", "one warning, not one per restart"


def test_reconcile_a_succeeded_round_stays_stopped_after_a_restart(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis, cluster(tmp_path) as k8s:
        k8s.apply(round_manifest("done", modelLength=6, rounds=1, pet=FAST_PET))
        wait_until(lambda: k8s.get("configmap", "done-coordinator-config"), 30, "the coordinator config")
        with stand_in_coordinator(k8s, "done", tmp_path, redis.url) as coordinator:
            drive = run_test_drive(coordinator.url, rounds=1)
            assert drive.returncode == 0, drive.stdout + drive.stderr
            k8s.wait_status("done", lambda s: s.get("phase") == "Succeeded", "the Succeeded phase")
        assert _replicas(k8s, "done") == 0
        ending = ("Succeeded", "RoundsCompleted", "PhaseChanged")
        k8s.round_events_with("done", "RoundsCompleted")
        k8s.round_events_with("done", "PhaseChanged", message_end="Succeeded")  # all of the ending
        posted = [reason for reason in _reasons(k8s, "done") if reason in ending]

        k8s.stop_operator(signal.SIGKILL)
        k8s.start_operator()
        _patch(k8s, "done", {"coordinator": {"logFilter": "debug"}})
        after = k8s.reconciled("done", timeout=90)
        _assert_current(after)
        assert after["status"]["phase"] == "Succeeded"
        assert after["status"]["completedRounds"] == 1
        assert _replicas(k8s, "done") == 0, "a finished round's coordinator is not started again"
        conditions = _conditions(after)
        assert (conditions["Succeeded"]["status"], conditions["Ready"]["reason"]) == ("True", "Succeeded")
        assert (conditions["CoordinatorReady"]["status"], conditions["CoordinatorReady"]["reason"]) == (
            "False",
            "Finished",
        )
        reasons = _reasons(k8s, "done")
        for step in ("ChildCreated", "PhaseChanged", "PetPhaseChanged", "ModelPublished", "RoundsCompleted"):
            assert step in reasons, f"no {step} event: {reasons}"
        assert [reason for reason in reasons if reason in ending] == posted, "the restart ends nothing again"


def test_reconcile_rounds_produced_while_the_operator_is_down_end_the_round(tmp_path: Path) -> None:
    """`rounds: 3` means 3 models: the coordinator stops by itself, the operator only reads."""
    with redis_server(tmp_path) as redis, cluster(tmp_path) as k8s:
        k8s.apply(round_manifest("offline", modelLength=6, rounds=3, pet=FAST_PET))
        wait_until(lambda: k8s.get("configmap", "offline-coordinator-config"), 30, "the coordinator config")
        assert _config(k8s, "offline")["pet"]["max_rounds"] == 3
        with stand_in_coordinator(k8s, "offline", tmp_path, redis.url) as coordinator:
            k8s.wait_status("offline", lambda s: s.get("phase") == "Running", "the Running phase")
            k8s.stop_operator(signal.SIGKILL)
            drive = run_test_drive(coordinator.url, rounds=3)
            assert drive.returncode == 0, drive.stdout + drive.stderr
            before = _coordinator_status(coordinator.url)
            assert (before["rounds_completed"], before["finished"]) == (3, True)
            # a 4th round is attempted with nobody to stop the coordinator but itself
            extra = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "xaynet",
                    "test-drive",
                    "-u",
                    coordinator.url,
                    "-r",
                    "1",
                    "--stall-seconds",
                    "5",
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert extra.returncode != 0, "no 4th model"
            coordinator_status = _coordinator_status(coordinator.url)
            assert (coordinator_status["rounds_completed"], coordinator_status["round_id"]) == (
                3,
                before["round_id"],
            )
            assert coordinator_status["counts"] == before["counts"], "nothing of a 4th round was accepted"

            k8s.start_operator()
            status = k8s.wait_status("offline", lambda s: s.get("phase") == "Succeeded", "Succeeded", 90)
        assert status["completedRounds"] == 3
        assert status["latestModel"]["round"] == coordinator_status["global_model"]["round_id"]
        assert _replicas(k8s, "offline") == 0
        assert_valid_round(k8s.get("federatedround", "offline") or {})
