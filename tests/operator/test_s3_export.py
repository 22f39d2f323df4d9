"""`spec.modelExport.s3`: a model too large for a ConfigMap is archived in S3-compatible storage,
`status.latestModel.s3` points at the object, and the object is readable after the round
Succeeded and its coordinator was scaled to 0 (the coordinator-held artifact is not).

Real processes: the emulated API server with the real kubectl and kopf operator, a
redis-server, the coordinator the Deployment would run (its ConfigMap, the Secret's keys as
its environment), and moto's S3 server over HTTP.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tests.operator.cluster import EXAMPLE, NAMESPACE, assert_valid_round, cluster, round_manifest
from tests.processes import coordinator_process, redis_server, run_test_drive, wait_until
from tests.s3server import S3Server, s3_server
from xaynet.core.mask.model import GlobalModel
from xaynet.core.s3 import sha256_checksum
from xaynet.operator.status import condition

PET = {**EXAMPLE["spec"]["pet"], "minSumTime": 1, "minUpdateTime": 1, "minSum2Time": 0.5}
PET["sumProbability"] = 0.3


def _export(s3: S3Server) -> dict[str, Any]:
    """`spec.modelExport`: a ConfigMap too small for the model, and the S3 archive."""
    return {
        "configMap": True,
        "maxConfigMapBytes": 1024,
        "s3": {"endpoint": s3.url, "region": "minio", "credentialsSecretRef": {"name": "s3-keys"}},
    }


def _kubelet_env(redis_url: str, port: int, directory: Path, access: str, secret: str) -> dict[str, str]:
    """What the kubelet would resolve from the coordinator Deployment (the Secret's keys included)."""
    return {
        "XAYNET_REDIS__URL": redis_url,
        "XAYNET_API__BIND_ADDRESS": f"127.0.0.1:{port}",
        "XAYNET_MODEL_EXPORT__DIRECTORY": str(directory / "models"),
        "XAYNET_S3__ACCESS_KEY": access,
        "XAYNET_S3__SECRET_ACCESS_KEY": secret,
    }


def test_a_large_model_is_archived_in_s3_and_outlives_the_coordinator(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis, s3_server() as s3, cluster(tmp_path) as k8s:
        k8s.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s3-keys", "namespace": NAMESPACE},
                "data": {
                    "accessKey": base64.b64encode(s3.access_key.encode()).decode(),
                    "secretKey": base64.b64encode(s3.secret_key.encode()).decode(),
                },
            }
        )
        k8s.apply(round_manifest("arch", modelLength=200, rounds=1, pet=PET, modelExport=_export(s3)))
        config_map = wait_until(
            lambda: k8s.get("configmap", "arch-coordinator-config"), 30, "the coordinator config"
        )
        config = tomllib.loads(config_map["data"]["config.toml"])
        assert config["s3"] == {
            "region": ["minio", s3.url],
            "buckets": {"global_models": "global-models"},
            "max_queued": 100,
        }
        deployment = k8s.get("deployment", "arch-coordinator") or {}
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["XAYNET_S3__ACCESS_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "s3-keys", "key": "accessKey"}
        }
        assert env["XAYNET_S3__SECRET_ACCESS_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "s3-keys", "key": "secretKey"}
        }

        directory = tmp_path / "coordinator"
        directory.mkdir()
        port = k8s.coordinator_port
        kubelet_env = _kubelet_env(redis.url, port, directory, s3.access_key, s3.secret_key)
        with coordinator_process(
            directory, config_map["data"]["config.toml"], port, env=kubelet_env
        ) as coord:
            drive = run_test_drive(coord.url, rounds=1)
            assert drive.returncode == 0, drive.stdout + drive.stderr
            status = k8s.wait_status("arch", lambda s: s.get("phase") == "Succeeded", "the Succeeded phase")
        stopped = k8s.get("deployment", "arch-coordinator") or {}
        assert stopped["spec"]["replicas"] == 0
        assert_valid_round(k8s.get("federatedround", "arch") or {})

        latest = status["latestModel"]
        assert "name" not in latest and latest["size"] > 1024  # too large for the ConfigMap
        key = latest["s3"].removeprefix("s3://global-models/")
        assert key.split("_")[0] == str(latest["round"]) and len(key.split("_")[1]) == 64
        body = s3.objects()[key]
        assert sha256_checksum(body) == latest["checksum"]
        assert len(GlobalModel.from_bincode(body)) == 200

        # the coordinator is gone; the model is not
        got = subprocess.run(
            [
                sys.executable,
                "-m",
                "xaynet",
                "model",
                "get",
                latest["s3"],
                "--s3-endpoint",
                s3.url,
                "-o",
                str(tmp_path / "model.npy"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key},
        )
        assert got.returncode == 0, got.stderr
        assert f"checksum:    {latest['checksum']} (matches the object's metadata)" in got.stdout


def test_wrong_s3_keys_show_as_a_condition_and_the_model_waits_for_the_fix(tmp_path: Path) -> None:
    """A user's first mistake with `spec.modelExport.s3`: keys that S3 refuses. The round says
    why in `ModelArchived` (with a Warning event), does not claim Succeeded, and once the pod
    runs with the right keys the queued model is uploaded: nothing lost."""
    with redis_server(tmp_path) as redis, s3_server(with_auth=True) as s3, cluster(tmp_path) as k8s:
        k8s.apply(round_manifest("keys", modelLength=200, rounds=1, pet=PET, modelExport=_export(s3)))
        config_map = wait_until(
            lambda: k8s.get("configmap", "keys-coordinator-config"), 30, "the coordinator config"
        )
        directory = tmp_path / "coordinator"
        directory.mkdir()
        port = k8s.coordinator_port
        kubelet_env = _kubelet_env(redis.url, port, directory, s3.access_key, "not-the-secret")
        config = config_map["data"]["config.toml"]
        with coordinator_process(directory, config, port, env=kubelet_env) as coord:
            drive = run_test_drive(coord.url, rounds=1)
            assert drive.returncode == 0, drive.stdout + drive.stderr
            status = k8s.wait_status(
                "keys",
                lambda s: (
                    (condition(s.get("conditions"), "ModelArchived") or {}).get("reason") == "UploadFailing"
                ),
                "ModelArchived=False/UploadFailing",
            )
            archived = condition(status["conditions"], "ModelArchived") or {}
            assert archived["status"] == "False"
            assert "1 global model(s) queued for bucket global-models" in archived["message"]
            assert "credentials Secret" in archived["message"]
            assert status["phase"] == "Running"  # not Succeeded while the model is only in Redis
            warnings = k8s.round_events_with("keys", "UploadFailing")
            assert any(e["type"] == "Warning" for e in warnings if e["reason"] == "UploadFailing")
            assert s3.objects() == {}

        # the user fixes the Secret; the pod restarts with the right keys
        kubelet_env["XAYNET_S3__SECRET_ACCESS_KEY"] = s3.secret_key
        with coordinator_process(directory, config, port, env=kubelet_env):
            status = k8s.wait_status("keys", lambda s: s.get("phase") == "Succeeded", "the Succeeded phase")
        archived = condition(status["conditions"], "ModelArchived") or {}
        assert (archived["status"], archived["reason"]) == ("True", "Uploaded")
        key = status["latestModel"]["s3"].removeprefix("s3://global-models/")
        assert sha256_checksum(s3.objects()[key]) == status["latestModel"]["checksum"]
        assert_valid_round(k8s.get("federatedround", "keys") or {})
