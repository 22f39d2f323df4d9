"""An External Redis whose password has characters a URL cannot carry (`@`, `:`, `/`, `#`).

The coordinator Deployment gets the password from the Secret as its own variable; a real
coordinator process, given the environment the kubelet would resolve, reaches a real
`redis-server --requirepass` with it, and nothing of the password is in the URL.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import coordinator_process, free_port, http_get, pet_config, wait_until
from xaynet.operator.children import coordinator
from xaynet.operator.spec import parse_spec

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
PASSWORD = "p@ss:w/rd#1 ü"


@contextlib.contextmanager
def redis_with_password(directory: Path, password: str) -> Iterator[int]:
    port = free_port()
    config = directory / "redis.conf"
    config.write_text(f'port {port}\nbind 127.0.0.1\nsave ""\nrequirepass "{password}"\n')
    process = subprocess.Popen(
        ["redis-server", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: _answers(port), 10, "redis-server to listen")
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"-NOAUTH")
    except OSError:
        return False


def _kubelet_env(port: int, password: str) -> dict[str, str]:
    """The coordinator container's environment as the kubelet resolves it from the Secret."""
    spec = parse_spec(
        {
            "modelLength": 4,
            "redis": {
                "mode": "External",
                "url": f"redis://127.0.0.1:{port}/0",
                "passwordSecretRef": {"name": "redis-auth", "key": "password"},
            },
        }
    )
    container = coordinator.deployment("demo", "ns", spec, "")["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for item in container["env"]:
        if item["name"].startswith("XAYNET_S3"):
            continue
        if "valueFrom" in item:
            assert item["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "password"}
            env[item["name"]] = password
        else:
            assert "$(" not in item["value"], "nothing is spliced into a value"
            env[item["name"]] = item["value"]
    assert password not in env["XAYNET_REDIS__URL"]
    return env


def test_a_password_with_url_characters_reaches_redis(tmp_path: Path) -> None:
    with redis_with_password(tmp_path, PASSWORD) as redis_port:
        env = _kubelet_env(redis_port, PASSWORD)
        port = free_port()
        config = pet_config(4, port=port)  # no [redis]: the environment adds it, as in the pod
        with coordinator_process(tmp_path, config, port, env=env) as coord:
            wait_until(lambda: http_get(coord.url + "/readyz", 1)[0] == 200, 30, "/readyz 200")
            assert coord.status()["store"] == "redis"
            assert PASSWORD not in coord.logs()


def test_a_wrong_password_is_reported_not_ready(tmp_path: Path) -> None:
    with redis_with_password(tmp_path, PASSWORD) as redis_port:
        env = _kubelet_env(redis_port, "not-the-password-42")
        port = free_port()
        with coordinator_process(tmp_path, pet_config(4, port=port), port, env=env) as coord:
            _, body = wait_until(
                lambda: (r := http_get(coord.url + "/readyz", 1))[0] == 503 and b"store" in r[1] and r,
                30,
                "/readyz 503 naming the store",
            )
            assert b"store_unavailable" in body
            assert b"not-the-password-42" not in body and "not-the-password-42" not in coord.logs()
