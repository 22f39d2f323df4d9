"""The operator against an emulated Kubernetes API, driven with the real kubectl."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.operator.cluster import (
    EXAMPLE,
    NAMESPACE,
    ROOT,
    assert_valid_round,
    children,
    cluster,
    round_manifest,
    stand_in_coordinator,
)
from tests.processes import redis_server, run_test_drive, wait_until
from xaynet.core.mask.model import GlobalModel

_round = round_manifest
_children = children
_stand_in_coordinator = stand_in_coordinator


def test_apply_example_and_get_rounds(tmp_path: Path) -> None:
    with cluster(tmp_path) as k8s:
        k8s.kubectl("apply", "-f", str(ROOT / "examples" / "round.yaml"))
        # the whole status is written by one reconcile: once observed, every condition is there
        reconciled = k8s.reconciled("demo")
        assert reconciled["status"]["phase"] == "Provisioning"
        assert_valid_round(reconciled)
        table = k8s.kubectl("get", "rounds").stdout.splitlines()
        assert table[0].split() == [
            "NAME",
            "PHASE",
            "PET",
            "ROUND",
            "DONE",
            "SUM",
            "UPDATE",
            "SUM2",
            "MODEL",
            "AGE",
        ]
        assert table[1].split()[:2] == ["demo", "Provisioning"]
        assert k8s.kubectl("get", "fr").stdout.splitlines()[1].startswith("demo")
        listed = [line.split()[0] for line in k8s.kubectl("get", "all").stdout.splitlines()[1:]]
        assert any(name.endswith("demo") for name in listed), "category `all` includes rounds"
        status = reconciled["status"]
        conditions = {c["type"]: c for c in status["conditions"]}
        # no pods in this cluster: nothing is claimed that was not checked
        assert (conditions["RedisReady"]["status"], conditions["RedisReady"]["reason"]) == (
            "False",
            "RedisNotAvailable",
        )
        assert (conditions["CoordinatorReady"]["status"], conditions["CoordinatorReady"]["reason"]) == (
            "False",
            "Unreachable",
        )
        assert (conditions["Ready"]["status"], conditions["Ready"]["reason"]) == (
            "False",
            "CoordinatorNotReady",
        )
        assert reconciled["metadata"].get("finalizers") in (None, []), "a Managed round needs no finalizer"
        for condition in conditions.values():
            assert set(condition) >= {
                "type",
                "status",
                "reason",
                "message",
                "lastTransitionTime",
                "observedGeneration",
            }


def test_children_are_owned_labelled_and_configured(tmp_path: Path) -> None:
    with cluster(tmp_path) as k8s:
        k8s.apply(_round("alpha", modelLength=12))
        wait_until(lambda: len(_children(k8s, "alpha")) == 7, 30, "seven children")
        owner = k8s.get("federatedround", "alpha")
        assert owner is not None
        children = _children(k8s, "alpha")
        assert set(children) == {
            "Secret/alpha-redis",
            "Deployment/alpha-redis",
            "Service/alpha-redis",
            "ConfigMap/alpha-coordinator-config",
            "Deployment/alpha-coordinator",
            "Service/alpha-coordinator",
            "Service/alpha-metrics",
        }
        for child in children.values():
            (reference,) = child["metadata"]["ownerReferences"]
            assert reference["uid"] == owner["metadata"]["uid"]
            assert (reference["kind"], reference["name"], reference["controller"]) == (
                "FederatedRound",
                "alpha",
                True,
            )
            assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "xaynet-operator"
        service = children["Service/alpha-coordinator"]["spec"]
        assert service["ports"] == [{"name": "http", "port": 8081, "targetPort": "http"}]
        pod = children["Deployment/alpha-coordinator"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        env = {e["name"]: e for e in container["env"]}
        assert env["XAYNET_REDIS__URL"]["value"] == f"redis://alpha-redis.{NAMESPACE}.svc:6379/0"
        assert env["XAYNET_REDIS__PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "alpha-redis"
        config = tomllib.loads(children["ConfigMap/alpha-coordinator-config"]["data"]["config.toml"])
        assert config["model"]["length"] == 12
        assert config["pet"]["sum"] == EXAMPLE["spec"]["pet"]["sumProbability"]
        assert config["redis"]["namespace"] == f"{NAMESPACE}.alpha"
        assert config["mask"] == {
            "group_type": "Prime",
            "data_type": "F32",
            "bound_type": "B0",
            "model_type": "M3",
        }
        assert len(base64.b64decode(children["Secret/alpha-redis"]["data"]["password"])) >= 24


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"pet": {"maxUpdateCount": 10000}}, "spec.pet.maxUpdateCount"),
        ({"pet": {"sumProbability": 1.5}}, "spec.pet.sumProbability"),
        ({"pet": {"minSumCount": 50, "maxSumCount": 10}}, "spec.pet.minSumCount"),
        ({"modelLength": "many"}, "spec.modelLength"),
    ],
)
def test_invalid_rounds_fail_with_a_condition_and_no_children(
    tmp_path: Path, spec: dict[str, Any], field: str
) -> None:
    with cluster(tmp_path) as k8s:
        manifest = _round("bad")
        for key, value in spec.items():
            manifest["spec"][key] = (
                {**manifest["spec"].get(key, {}), **value} if isinstance(value, dict) else value
            )
        k8s.apply(manifest)
        status = k8s.wait_status("bad", lambda s: s.get("phase") == "Failed", "the Failed phase")
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert (failed["status"], failed["reason"]) == ("True", "InvalidSpec")
        assert field in failed["message"]
        assert _children(k8s, "bad") == {}
        assert "Failed" in k8s.kubectl("get", "rounds").stdout


def test_spec_changes_are_rolled_out_or_refused(tmp_path: Path) -> None:
    with cluster(tmp_path) as k8s:
        manifest = _round("gamma")
        k8s.apply(manifest)
        wait_until(
            lambda: "ConfigMap/gamma-coordinator-config" in _children(k8s, "gamma"), 30, "the config map"
        )
        manifest["spec"]["pet"]["sumProbability"] = 0.25
        k8s.apply(manifest)

        def config() -> dict[str, Any]:
            found = k8s.get("configmap", "gamma-coordinator-config")
            assert found is not None
            return tomllib.loads(found["data"]["config.toml"])

        wait_until(lambda: config()["pet"]["sum"] == 0.25, 30, "the safe change rolled out")
        manifest["spec"]["modelLength"] = 99
        k8s.apply(manifest)
        status = k8s.wait_status(
            "gamma",
            lambda s: any(
                c["type"] == "SpecChangeRefused" and c["status"] == "True" for c in s.get("conditions", [])
            ),
            "the refusal",
        )
        refused = next(c for c in status["conditions"] if c["type"] == "SpecChangeRefused")
        assert "spec.modelLength" in refused["message"]
        assert config()["model"]["length"] == 4, "the unsafe change is not rolled out"


def test_external_redis_finalizer_removes_only_the_rounds_keys(tmp_path: Path) -> None:
    import redis as redis_client

    with redis_server(tmp_path) as redis, cluster(tmp_path) as k8s:
        k8s.apply(_round("ext", redis={"mode": "External", "url": f"redis://127.0.0.1:{redis.port}/0"}))
        wait_until(lambda: "Deployment/ext-coordinator" in _children(k8s, "ext"), 30, "provisioning")
        assert "Deployment/ext-redis" not in _children(k8s, "ext")
        client = redis_client.Redis(port=redis.port)
        client.set(f"xaynet:{NAMESPACE}.ext:round", b"state of this round")
        client.hset(f"xaynet:{NAMESPACE}.ext:sum_dict", b"k", b"v")
        client.set(f"xaynet:{NAMESPACE}.other:round", b"another round's state")
        k8s.kubectl("delete", "federatedround", "ext", "--wait=false")
        wait_until(lambda: k8s.get("federatedround", "ext") is None, 30, "the round to be deleted")
        assert client.get(f"xaynet:{NAMESPACE}.ext:round") is None
        assert not client.exists(f"xaynet:{NAMESPACE}.ext:sum_dict")
        assert client.get(f"xaynet:{NAMESPACE}.other:round") == b"another round's state"
        assert "removed the round's keys" in k8s.operator_log()


def test_rounds_are_followed_and_models_published(tmp_path: Path) -> None:
    pet = {
        "minSumTime": 1,
        "minUpdateTime": 1,
        "minSum2Time": 0.5,
        "maxSumTime": 30,
        "maxUpdateTime": 30,
        "maxSum2Time": 30,
        "sumProbability": 0.3,
    }
    with redis_server(tmp_path) as redis, cluster(tmp_path) as k8s:
        k8s.apply(_round("live", modelLength=6, rounds=2, pet={**EXAMPLE["spec"]["pet"], **pet}))
        wait_until(lambda: k8s.get("configmap", "live-coordinator-config"), 30, "the coordinator config")
        with _stand_in_coordinator(k8s, "live", tmp_path, redis.url) as coordinator:
            k8s.wait_status("live", lambda s: s.get("phase") == "Running", "the Running phase")
            drive = run_test_drive(coordinator.url, rounds=2)
            assert drive.returncode == 0, drive.stdout + drive.stderr
            status = k8s.wait_status("live", lambda s: s.get("phase") == "Succeeded", "the Succeeded phase")
            body = coordinator_body(coordinator.url)
        assert status["completedRounds"] == 2
        assert_valid_round(k8s.get("federatedround", "live") or {})
        latest = status["latestModel"]
        model_map = k8s.get("configmap", latest["name"])
        assert model_map is not None
        published = base64.b64decode(model_map["binaryData"]["model.bin"])
        assert published == body, "the ConfigMap holds the model the participants received"
        assert model_map["metadata"]["annotations"]["xaynet.dev/round"] == str(latest["round"])
        assert latest["checksum"] == model_map["metadata"]["annotations"]["xaynet.dev/checksum"]
        assert len(GlobalModel.from_bincode(published)) == 6
        coordinator_deployment = k8s.get("deployment", "live-coordinator")
        assert coordinator_deployment is not None
        assert coordinator_deployment["spec"]["replicas"] == 0, "a finished round stops its coordinator"
        reasons = {event.get("reason") for event in k8s.items("events")}
        assert {"PhaseChanged", "ModelPublished", "RoundsCompleted"} <= reasons
        assert "Succeeded" in k8s.kubectl("get", "rounds").stdout


def coordinator_body(url: str) -> bytes:
    from tests.processes import http_get

    code, body = http_get(url + "/model")
    assert code == 200
    return body


def test_operator_restart_resumes_without_duplicates(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis, cluster(tmp_path) as k8s:
        pet = {
            **EXAMPLE["spec"]["pet"],
            "minSumTime": 1,
            "minUpdateTime": 1,
            "minSum2Time": 0.5,
            "sumProbability": 0.3,
        }
        k8s.apply(_round("steady", pet=pet))
        wait_until(lambda: len(_children(k8s, "steady")) == 7, 30, "seven children")
        with _stand_in_coordinator(k8s, "steady", tmp_path, redis.url) as coordinator:
            before = k8s.wait_status(
                "steady", lambda s: s.get("phase") == "Running" and s.get("round"), "following"
            )
            versions = {k: v["metadata"]["resourceVersion"] for k, v in _children(k8s, "steady").items()}
            k8s.stop_operator(signal.SIGKILL)
            seen = len(k8s.requests())
            k8s.start_operator()
            drive = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "xaynet",
                    "test-drive",
                    "-u",
                    coordinator.url,
                    "-n",
                    "10",
                    "--rounds",
                    "1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            after = k8s.wait_status(
                "steady",
                lambda s: (s.get("round") or 0) > before["round"],
                "the next round, followed after the restart",
                120,
            )
            drive.wait(300)
        assert after["phase"] == "Running"
        now = {k: v["metadata"]["resourceVersion"] for k, v in _children(k8s, "steady").items()}
        published = now.pop("ConfigMap/steady-global-model", None)
        assert now == versions, "the provisioned children were neither re-created nor touched"
        creates = [
            f"{method} {path.split('?')[0]}"
            for method, path, _client in (line.split() for line in k8s.requests()[seen:])
            if method == "POST" and "/events" not in path
        ]
        expected = [f"POST /api/v1/namespaces/{NAMESPACE}/configmaps"] if published else []
        assert creates == expected, "after the restart only a newly published model was created"


def test_a_model_too_large_for_a_configmap_is_published_as_an_artifact(tmp_path: Path) -> None:
    pet = {
        **EXAMPLE["spec"]["pet"],
        "minSumTime": 1,
        "minUpdateTime": 1,
        "minSum2Time": 0.5,
        "sumProbability": 0.3,
    }
    with redis_server(tmp_path) as redis, cluster(tmp_path) as k8s:
        k8s.apply(
            _round(
                "big",
                modelLength=200,
                rounds=1,
                pet=pet,
                modelExport={"configMap": True, "maxConfigMapBytes": 1024},
            )
        )
        wait_until(lambda: k8s.get("configmap", "big-coordinator-config"), 30, "the coordinator config")
        with _stand_in_coordinator(k8s, "big", tmp_path, redis.url) as coordinator:
            drive = run_test_drive(coordinator.url, rounds=1)
            assert drive.returncode == 0, drive.stdout + drive.stderr
            status = k8s.wait_status("big", lambda s: s.get("phase") == "Succeeded", "the Succeeded phase")
        latest = status["latestModel"]
        assert_valid_round(k8s.get("federatedround", "big") or {})
        assert "name" not in latest, "no ConfigMap name: the model is an artifact"
        assert latest["size"] > 1024
        assert latest["artifact"]["url"] == f"{coordinator.url}/model"
        assert latest["artifact"]["path"] == f"/models/global-model-{latest['round']:08d}.bin"
        published = next(c for c in status["conditions"] if c["type"] == "ModelPublished")
        assert (published["status"], published["reason"]) == ("True", "Artifact")
        assert "exceeds spec.modelExport.maxConfigMapBytes" in published["message"]
        assert k8s.get("configmap", "big-global-model") is None
