"""The original XayNet v0.11.0 config files start `xaynet coordinator` unchanged (drop-in).

The three files are rebuilt here from SETTINGS.md §3 (every key and value of each). Only the
environment variables the original's own deployments set change anything: the bind address
(a free port, so tests run in parallel) and the Redis URL (a test redis-server). Each start
logs one warning per difference from the original, and a round completes over plain HTTP.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.test_wheel_rounds import wheel_participants
from tests.processes import (
    CoordinatorProcess,
    coordinator_process,
    free_port,
    http_get,
    redis_server,
    wait_until,
)
from xaynet.core.mask.model import GlobalModel

pytest.importorskip("xaynet_sdk", reason="the reference wheel xaynet-sdk-python==0.1.0 is not installed")


def original_config(
    *, bind: str, sum_prob: float, update_prob: float, influx: str, redis: str | None, minio: str
) -> str:
    """One of v0.11.0's shipped configs, key by key as SETTINGS.md §3 lists them."""
    redis_section = f'[redis]\nurl = "{redis}"\n' if redis is not None else ""
    return f"""\
[log]
filter = "xaynet=debug,http=warn,info"

[api]
bind_address = "{bind}"
tls_certificate = "/app/ssl/tls.pem"
tls_key = "/app/ssl/tls.key"
# tls_client_auth = "/app/ssl/trust_anchor.pem"

[pet]
min_sum_count = 1
max_sum_count = 100
min_update_count = 3
max_update_count = 10000
min_sum2_count = 1
max_sum2_count = 100
min_sum_time = 5
max_sum_time = 3600
min_update_time = 10
max_update_time = 3600
min_sum2_time = 5
max_sum2_time = 3600
sum = {sum_prob}
update = {update_prob}

[mask]
group_type = "Prime"
data_type = "F32"
bound_type = "B0"
model_type = "M3"

[model]
length = 4

[metrics.influxdb]
url = "{influx}"
db = "metrics"

{redis_section}
[s3]
access_key = "minio"
secret_access_key = "minio123"
region = ["minio", "{minio}"]

[restore]
enable = true
"""


ORIGINALS = {
    "configs/config.toml": original_config(
        bind="127.0.0.1:8081",
        sum_prob=0.5,
        update_prob=0.9,
        influx="http://localhost:8086",
        redis="redis://127.0.0.1/",
        minio="http://localhost:9000",
    ),
    "configs/docker-dev.toml": original_config(
        bind="0.0.0.0:8081",
        sum_prob=0.01,
        update_prob=0.1,
        influx="http://influxdb:8086",
        redis="redis://redis",
        minio="http://minio:9000",
    ),
    "k8s/coordinator/development/config.toml": original_config(
        bind="0.0.0.0:8081",
        sum_prob=0.5,
        update_prob=0.9,
        influx="http://influxdb:8086",
        redis=None,  # the deployment supplies XAYNET_REDIS__URL
        minio="http://minio:9000",
    ),
}

# The differences, each logged once at start (the docs list them: docs/migrating-from-xaynet.md).
WARNINGS = (
    "pet.max_update_count = 10000 is more than mask.model_type M3 can aggregate: capped to 1000",
    "api.tls_certificate = /app/ssl/tls.pem, api.tls_key = /app/ssl/tls.key ignored",
    "settings accepted but not implemented: [metrics]",
)


def _check_plausible_mean(model: GlobalModel, updates: int) -> None:
    """Each participant's weights are multiples of 1/8 in [-5/8, 5/8] (wheel_driver.py with no
    one-hot tail): the global model times the number of updates is such a sum, exactly."""
    values = model.numerators.astype(np.float64) / model.denominators.astype(np.float64)
    assert len(values) == 4
    eighths = values * updates * 8
    assert np.all(np.abs(eighths - np.round(eighths)) < 1e-4), values
    assert np.all(np.abs(values) <= 5 / 8 + 1e-9), values


@pytest.mark.parametrize("name", ["configs/config.toml", "k8s/coordinator/development/config.toml"])
def test_original_config_completes_a_round_with_wheel_participants(name: str, tmp_path: Path) -> None:
    port = free_port()
    with redis_server(tmp_path) as redis:
        env = {"XAYNET_API__BIND_ADDRESS": f"127.0.0.1:{port}", "XAYNET_REDIS__URL": redis.url}
        with coordinator_process(tmp_path, ORIGINALS[name], port, env=env) as coordinator:
            status = coordinator.status()
            assert status["max_update_count"] == 1000  # the effective, capped value
            assert status["store"] == "redis"
            logs = coordinator.logs()
            for warning in WARNINGS:
                assert logs.count(warning) == 1, (warning, logs[-3000:])
            assert "Traceback" not in logs
            # 30 wheel participants: with sum = 0.5 and update = 0.9 a draw fails (no sum
            # participant, or fewer than 3 updates) with probability below 1e-5.
            with wheel_participants(coordinator.url, tmp_path, groups=3, count=30, total=0, head=4):
                wait_until(lambda: coordinator.status()["rounds_completed"] >= 1, 240, "a completed round")
            status = coordinator.status()
            code, body = http_get(coordinator.url + "/model")
    assert code == 200
    assert status["global_model"]["round_id"] == status["last_round"]["round_id"]
    _check_plausible_mean(
        GlobalModel.from_bincode(body), status["last_round"]["counts"]["update"]["accepted"]
    )


def test_original_docker_dev_config_completes_a_round(tmp_path: Path) -> None:
    """docker-dev's sum = 0.01, update = 0.1 need many participants: 700 make a failed draw
    (no sum participant, or fewer than 3 updates) less likely than 1e-3. The SDK's participants
    of `xaynet test-drive -u` are lighter than 700 wheel threads, and check the model exactly."""
    port = free_port()
    with redis_server(tmp_path) as redis:
        env = {"XAYNET_API__BIND_ADDRESS": f"127.0.0.1:{port}", "XAYNET_REDIS__URL": redis.url}
        with coordinator_process(
            tmp_path, ORIGINALS["configs/docker-dev.toml"], port, env=env
        ) as coordinator:
            logs = coordinator.logs()
            for warning in WARNINGS:
                assert logs.count(warning) == 1, (warning, logs[-3000:])
            drive = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "xaynet",
                    "test-drive",
                    "-u",
                    coordinator.url,
                    "-n",
                    "700",
                    "--rounds",
                    "1",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            status = coordinator.status()
    assert drive.returncode == 0, drive.stdout[-3000:] + drive.stderr
    assert "all global models equal the mean" in drive.stdout
    assert status["rounds_completed"] >= 1, json.dumps(status)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_with_tls_switched_on_the_original_tls_lines_serve_https(tmp_path: Path) -> None:
    certificate, key = tmp_path / "tls.pem", tmp_path / "tls.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(certificate),
        ],
        check=True,
        capture_output=True,
    )
    text = ORIGINALS["configs/config.toml"].replace("/app/ssl/tls.pem", str(certificate))
    config = tmp_path / "config.toml"
    config.write_text(text.replace("/app/ssl/tls.key", str(key)))
    port = free_port()
    trusted = ssl.create_default_context(cafile=str(certificate))

    def healthy() -> bool:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{port}/healthz", timeout=2, context=trusted
        ) as answer:
            return bool(answer.status == 200)

    with redis_server(tmp_path) as redis:
        env = {
            "XAYNET_API__BIND_ADDRESS": f"127.0.0.1:{port}",
            "XAYNET_API__TLS": "true",
            "XAYNET_REDIS__URL": redis.url,
        }
        coordinator = CoordinatorProcess(config, port, tmp_path / "coordinator.log", env=env)
        coordinator.start(wait_ready=False)
        assert coordinator.process is not None
        process = coordinator.process
        try:
            wait_until(lambda: healthy() or process.poll() is not None, 60, "the coordinator over HTTPS")
            assert healthy(), coordinator.logs()
        finally:
            coordinator.kill()
    assert "ignored: HTTPS is off" not in coordinator.logs()
