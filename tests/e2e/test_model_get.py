"""Global models as durable artifacts, end to end: a coordinator process with the original's
`[s3]` section, a real redis-server and a real S3-compatible server (moto) over HTTP.

Three hand-driven rounds → three objects named as XayNet v0.11.0 named them, each holding the
`/model` bytes; `xaynet model get` reads them back (and from the coordinator, a model file and
a ConfigMap dump), checks the checksum and writes the exact mean the participants sent.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import yaml

from tests.coordinator.rounds import LENGTH, MODELS, complete_round, wait_phase
from tests.models import quantised
from tests.pet_client import PetClient
from tests.processes import coordinator_process, free_port, http_get, pet_config, redis_server, wait_until
from tests.s3server import S3Server, s3_server
from xaynet.core.mask.config import DataType
from xaynet.core.mask.model import GlobalModel
from xaynet.core.s3 import ModelMetadata, sha256_checksum
from xaynet.operator.children.model_configmap import model_config_map

UPDATES = 3


def exact_mean() -> GlobalModel:
    """The plain mean of the models `complete_round` sends (each as the encoding floors it)."""
    sent = MODELS[:UPDATES]
    return GlobalModel.from_list(
        [sum((quantised(model[j]) for model in sent), Fraction(0)) / UPDATES for j in range(LENGTH)]
    )


def model_get(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xaynet", "model", "get", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def s3_env(server: S3Server) -> dict[str, str]:
    """The variables the coordinator's own deployment sets, reused by `model get`."""
    return {
        "XAYNET_S3__ACCESS_KEY": server.access_key,
        "XAYNET_S3__SECRET_ACCESS_KEY": server.secret_key,
        "XAYNET_S3__REGION": f"minio {server.url}",
    }


def test_three_rounds_three_objects_and_model_get_returns_the_exact_mean(tmp_path: Path) -> None:
    export = tmp_path / "models"
    with redis_server(tmp_path) as redis, s3_server() as server:
        port = free_port()
        config = pet_config(
            LENGTH,
            port=port,
            redis_url=redis.url,
            export=export,
            sum_prob=0.5,
            times=(0, 0, 0),
            max_time=300,
            extra=server.toml(),
        )
        with coordinator_process(tmp_path, config, port) as coordinator:
            wait_until(lambda: http_get(coordinator.url + "/readyz")[0] == 200, 60, "the round restored")
            seeds: dict[int, bytes] = {}
            for _ in range(3):
                wait_phase(coordinator, "sum")
                params = PetClient(coordinator.url).params()
                round_id = complete_round(coordinator, UPDATES)
                seeds[round_id] = params.seed
            assert "accepted but not implemented: [s3]" not in coordinator.logs()

            def archived() -> bool:
                status = coordinator.status()["archive"]
                return bool(status["pending"] == 0 and len(server.objects()) == 3)

            wait_until(archived, 60, "three archived models")
            latest = coordinator.status()["archive"]["latest"]
            code, served = http_get(coordinator.url + "/model")
            assert code == 200

            # from the coordinator itself: checked against its /status
            from_url = model_get(coordinator.url, "-o", str(tmp_path / "from-url.json"))
            assert from_url.returncode == 0, from_url.stderr
            assert "matches the coordinator's /status" in from_url.stdout

        objects = server.objects()
        expected = exact_mean()
        assert set(objects) == {f"{r}_{seed.hex()}" for r, seed in seeds.items()}  # the original's ids
        for round_id, seed in seeds.items():
            body = objects[f"{round_id}_{seed.hex()}"]
            assert body == (export / f"global-model-{round_id:08d}.bin").read_bytes()  # the /model bytes
            assert GlobalModel.from_bincode(body) == expected
            head = server.client().head_object(Bucket="global-models", Key=f"{round_id}_{seed.hex()}")
            metadata = ModelMetadata.from_s3(head["Metadata"])
            assert (metadata.round_id, metadata.round_seed, metadata.checksum) == (
                round_id,
                seed,
                sha256_checksum(body),
            )
            assert (metadata.mask_config, metadata.model_length, metadata.updates) == (
                "Prime/F32/B0/M3",
                LENGTH,
                UPDATES,
            )
        last = max(seeds)
        assert served == objects[f"{last}_{seeds[last].hex()}"]
        assert latest["uri"] == f"s3://global-models/{last}_{seeds[last].hex()}"
        weights = expected.to_numpy(DataType.F32)
        assert json.loads((tmp_path / "from-url.json").read_text()) == weights.tolist()

        # from S3, with the coordinator's own environment variables
        uri = f"s3://global-models/{last}_{seeds[last].hex()}"
        got = model_get(uri, "-o", str(tmp_path / "model.npy"), env=s3_env(server))
        assert got.returncode == 0, got.stderr
        assert np.array_equal(np.load(tmp_path / "model.npy"), weights)
        assert np.load(tmp_path / "model.npy").dtype == np.float32
        for line in (
            f"round:       {last}",
            f"length:      {LENGTH} weights",
            "mask config: Prime/F32/B0/M3",
            f"checksum:    {sha256_checksum(served)} (matches the object's metadata)",
            f"updates:     {UPDATES} participants averaged",
        ):
            assert line in got.stdout, got.stdout
        # raw float32, the endpoint from the flag, the keys from the environment
        keys = {k: v for k, v in s3_env(server).items() if k != "XAYNET_S3__REGION"}
        raw = model_get(uri, "--s3-endpoint", server.url, "-o", str(tmp_path / "model.f32"), env=keys)
        assert raw.returncode == 0, raw.stderr
        assert np.array_equal(np.fromfile(tmp_path / "model.f32", dtype="<f4"), weights)

        missing = model_get("s3://global-models/1_00", "-o", str(tmp_path / "none.npy"), env=s3_env(server))
        assert missing.returncode == 1
        assert missing.stderr == (
            "xaynet model get: s3://global-models/1_00 does not exist "
            "(objects are named <round>_<hex seed>)\n"
        )

    # a model file written by [model_export], checked against latest.json beside it
    from_file = model_get(str(export / f"global-model-{last:08d}.bin"), "-o", str(tmp_path / "f.npy"))
    assert from_file.returncode == 0, from_file.stderr
    assert "matches latest.json" in from_file.stdout
    assert np.array_equal(np.load(tmp_path / "f.npy"), weights)


def test_model_get_reads_and_checks_a_configmap_dump(tmp_path: Path) -> None:
    body = exact_mean().to_bincode()
    config_map = model_config_map("demo", 5, body, sha256_checksum(body))
    dump = tmp_path / "cm.yaml"
    dump.write_text(yaml.safe_dump(config_map))  # as `kubectl get configmap demo-global-model -o yaml`
    got = model_get(str(dump), "-o", str(tmp_path / "model.json"))
    assert got.returncode == 0, got.stderr
    assert "round:       5" in got.stdout
    assert "matches the ConfigMap demo-global-model annotation" in got.stdout
    assert json.loads((tmp_path / "model.json").read_text()) == exact_mean().to_numpy(DataType.F32).tolist()

    # from stdin, as JSON (`kubectl get configmap ... -o json | xaynet model get -`)
    piped = subprocess.run(
        [
            sys.executable,
            "-m",
            "xaynet",
            "model",
            "get",
            "-",
            "--format",
            "f32",
            "-o",
            str(tmp_path / "m.f32"),
        ],
        input=json.dumps(config_map).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert np.array_equal(np.fromfile(tmp_path / "m.f32", dtype="<f4"), exact_mean().to_numpy(DataType.F32))

    # a tampered model: one line, exit 1, nothing written
    tampered = dict(config_map, binaryData={"model.bin": base64.b64encode(body[:-1] + b"\x02").decode()})
    dump.write_text(yaml.safe_dump(tampered))
    bad = model_get(str(dump), "-o", str(tmp_path / "bad.npy"))
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "checksum mismatch" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "bad.npy").exists()


def test_model_get_reads_an_object_the_original_wrote_and_a_bincode_starting_with_a_brace(
    tmp_path: Path,
) -> None:
    # 123 weights: the body starts with "{" (0x7b) and must still be read as bincode
    body = GlobalModel.from_list([Fraction(i, 7) for i in range(123)]).to_bincode()
    assert body.startswith(b"{")
    with s3_server() as server:
        client = server.client()
        client.create_bucket(
            Bucket="global-models", CreateBucketConfiguration={"LocationConstraint": "minio"}
        )
        key = "12_" + "ab" * 32  # the original's name, no metadata
        client.put_object(Bucket="global-models", Key=key, Body=body)
        got = model_get(f"s3://global-models/{key}", "-o", str(tmp_path / "m.json"), env=s3_env(server))
    assert got.returncode == 0, got.stderr
    assert "round:       12" in got.stdout
    assert "no xaynet metadata (written by the original XayNet?)" in got.stdout
    assert "(no reference to compare)" in got.stdout
    assert len(json.loads((tmp_path / "m.json").read_text())) == 123

    (tmp_path / "model.bin").write_bytes(body)
    from_file = model_get(str(tmp_path / "model.bin"), "--data-type", "F64", "-o", str(tmp_path / "m.npy"))
    assert from_file.returncode == 0, from_file.stderr
    assert np.load(tmp_path / "m.npy").dtype == np.float64
    (tmp_path / "broken.bin").write_bytes(body[:-3])
    broken = model_get(str(tmp_path / "broken.bin"), "-o", str(tmp_path / "x.npy"))
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert broken.stderr.startswith(f"xaynet model get: {tmp_path / 'broken.bin'} is not a global model")
