"""The managed Redis's generated container command and readiness probe, run for real.

The container command starts a real `redis-server` (config written from $REDIS_PASSWORD);
the probe must fail when the password is wrong or missing and pass only when it is right.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.processes import free_port, wait_until
from xaynet.operator.children import redis
from xaynet.operator.spec import parse_spec

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
PASSWORD = "s3cret-" + "x" * 20


@dataclass
class ManagedRedis:
    process: subprocess.Popen[bytes]
    port: int
    config_dir: Path
    data_dir: Path

    def probe(self, password: str | None) -> subprocess.CompletedProcess[bytes]:
        env = {"PATH": os.environ["PATH"]}
        if password is not None:
            env["REDIS_PASSWORD"] = password
        return subprocess.run(
            redis.readiness_command(self.port), env=env, capture_output=True, timeout=10, check=False
        )

    def cli(self, *args: str) -> str:
        env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": PASSWORD}
        command = ["redis-cli", "-p", str(self.port), *args]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()


def _start(directory: Path, port: int, password: str | None) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ["PATH"]}
    if password is not None:
        env["REDIS_PASSWORD"] = password
    script = redis.start_script(
        config_dir=str(directory / "run"), data_dir=str(directory / "data"), port=port
    )
    (directory / "run").mkdir(exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    return subprocess.Popen(
        ["sh", "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_the_deployment_runs_this_script_and_probe() -> None:
    (container,) = redis.deployment("demo", parse_spec({"modelLength": 4}))["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["command"] == ["sh", "-c", redis.start_script()]
    assert container["readinessProbe"]["exec"]["command"] == redis.readiness_command()


@contextlib.contextmanager
def managed_redis(directory: Path, port: int | None = None) -> Iterator[ManagedRedis]:
    port = port or free_port()
    server = ManagedRedis(_start(directory, port, PASSWORD), port, directory / "run", directory / "data")
    try:
        wait_until(lambda: server.probe(PASSWORD).returncode == 0, 15, "the managed Redis to become ready")
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
        server.process.wait(10)


def test_the_probe_passes_only_with_the_right_password(tmp_path: Path) -> None:
    with managed_redis(tmp_path) as server:
        assert server.probe(PASSWORD).returncode == 0
        assert server.probe("wrong").returncode != 0, "WRONGPASS must not count as ready"
        assert server.probe(None).returncode != 0, "NOAUTH must not count as ready"
        assert server.probe("").returncode != 0
        # Why the reply text is checked: redis-cli itself exits 0 on both refusals.
        env = {"PATH": os.environ["PATH"]}
        plain = subprocess.run(
            ["redis-cli", "-p", str(server.port), "-a", "wrong", "ping"],
            env=env,
            check=False,
            capture_output=True,
            timeout=10,
        )
        assert plain.returncode == 0 and b"PONG" not in plain.stdout
    assert server.probe(PASSWORD).returncode != 0, "a stopped Redis is not ready"


def test_the_password_is_in_no_process_arguments(tmp_path: Path) -> None:
    with managed_redis(tmp_path) as server:
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert b"redis-server" in cmdline, "the shell execs redis-server: one process, signals reach it"
        assert PASSWORD.encode() not in cmdline
        config = server.config_dir / "redis.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        pairs = server.cli("CONFIG", "GET", "append*").split()
        settings = dict(zip(pairs[::2], pairs[1::2], strict=True))
        assert settings["appendonly"] == "yes"
        assert settings["appendfsync"] == redis.APPENDFSYNC


def test_an_empty_password_refuses_to_start(tmp_path: Path) -> None:
    for password in (None, ""):
        process = _start(tmp_path, free_port(), password)
        output, _ = process.communicate(timeout=10)
        assert process.returncode != 0
        assert b"REDIS_PASSWORD" in output and b"the Secret has no password" in output
        assert not (tmp_path / "run" / "redis.conf").exists()


def test_acknowledged_writes_survive_a_killed_redis(tmp_path: Path) -> None:
    """The data directory (an emptyDir or the claim of spec.redis.storage) keeps the AOF."""
    port = free_port()
    with managed_redis(tmp_path, port) as server:
        for n in range(100):
            assert server.cli("SET", f"key{n}", str(n)) == "OK"
        aof = server.data_dir / "appendonlydir"
        wait_until(
            lambda: sum(f.stat().st_size for f in aof.glob("*.incr.aof")) > 100 * 10,
            10,
            "the append-only file to be written",
        )
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
    with managed_redis(tmp_path, port) as restarted:
        lost = [n for n in range(100) if restarted.cli("GET", f"key{n}") != str(n)]
        assert lost == []
