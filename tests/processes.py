"""Real processes for tests: redis-server and `xaynet coordinator`, on free loopback ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xaynet.coordinator.service import SHUTDOWN_SECONDS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            result = predicate()
            if result:
                return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    directory: Path
    appendfsync: str = "everysec"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def start(self) -> None:
        """(Re)start on the same port and directory, keeping the data (AOF)."""
        self.process = _spawn_redis(self.port, self.directory, appendfsync=self.appendfsync)
        wait_until(lambda: _redis_ping(self.port), 10, "redis-server to answer PING")


def _spawn_redis(
    port: int, directory: Path, appendonly: bool = True, appendfsync: str = "everysec"
) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    return subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes" if appendonly else "no",
            "--appendfsync",
            appendfsync,
            "--save",
            "",
            "--protected-mode",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


@contextlib.contextmanager
def redis_server(
    directory: Path, appendonly: bool = True, appendfsync: str = "everysec"
) -> Iterator[RedisServer]:
    port = free_port()
    server = RedisServer(port, _spawn_redis(port, directory, appendonly, appendfsync), directory, appendfsync)
    try:
        wait_until(lambda: _redis_ping(port), 10, "redis-server to answer PING")
        yield server
    finally:
        server.stop()


def pet_config(
    model_length: int,
    *,
    port: int,
    redis_url: str | None = None,
    namespace: str = "test",
    export: Path | None = None,
    sum_prob: float = 0.3,
    update_prob: float = 0.9,
    min_sum_count: int = 1,
    min_update_count: int = 3,
    min_sum2_count: int = 1,
    times: tuple[float, float, float] = (2, 2, 1),
    max_time: float = 30,
    max_counts: tuple[int, int, int] = (100, 1000, 100),
    log_filter: str = "xaynet=debug,info",
    extra: str = "",
) -> str:
    redis = f'[redis]\nurl = "{redis_url}"\nnamespace = "{namespace}"\n' if redis_url else ""
    exports = f'[model_export]\ndirectory = "{export}"\n' if export else ""
    return f"""
[log]
filter = "{log_filter}"
[api]
bind_address = "127.0.0.1:{port}"
[pet]
min_sum_count = {min_sum_count}
max_sum_count = {max_counts[0]}
min_update_count = {min_update_count}
max_update_count = {max_counts[1]}
min_sum2_count = {min_sum2_count}
max_sum2_count = {max_counts[2]}
min_sum_time = {times[0]}
max_sum_time = {max_time}
min_update_time = {times[1]}
max_update_time = {max_time}
min_sum2_time = {times[2]}
max_sum2_time = {max_time}
sum = {sum_prob}
update = {update_prob}
[mask]
group_type = "Prime"
data_type = "F32"
bound_type = "B0"
model_type = "M3"
[model]
length = {model_length}
{redis}{exports}{extra}
"""


@dataclass
class CoordinatorProcess:
    config: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xaynet", "coordinator", "-c", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
        )
        if wait_ready:
            wait_until(
                lambda: http_get(self.url + "/healthz", 1)[0] == 200 or self._died(),
                30,
                "coordinator /healthz",
            )
            # then past the restore from the store (not past a wait for Redis or a standby)
            wait_until(lambda: self._past_start() or self._died(), 30, "coordinator to restore its round")
            assert self.process.poll() is None, self.logs()

    def _past_start(self) -> bool:
        code, body = http_get(self.url + "/readyz", 1)
        return code == 200 or b'"reason": "starting"' not in body

    def _died(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def status(self, timeout: float = 30) -> dict[str, Any]:
        """`/status` of the serving coordinator; waits while it restores its round or, after a
        kill -9, waits out its predecessor's lease (503 `starting` / `standby`)."""

        def serving() -> dict[str, Any] | None:
            code, body = http_get(self.url + "/status")
            if code == 503 and json.loads(body).get("reason") in ("starting", "standby"):
                return None
            assert code == 200, body
            document: dict[str, Any] = json.loads(body)
            return document

        result: dict[str, Any] = wait_until(serving, timeout, "the coordinator to serve its round")
        return result

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            # a graceful stop may take its own bound: requests in flight, then the phase
            # machine, SHUTDOWN_SECONDS each (a request held by a fault proxy takes the first)
            self.process.wait(10 if sig == signal.SIGKILL else 2 * SHUTDOWN_SECONDS + 10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def coordinator_process(
    directory: Path, config_text: str, port: int, env: dict[str, str] | None = None
) -> Iterator[CoordinatorProcess]:
    config = directory / "config.toml"
    config.write_text(config_text)
    coordinator = CoordinatorProcess(config, port, directory / "coordinator.log", env=env or {})
    coordinator.start()
    try:
        yield coordinator
    finally:
        coordinator.kill(signal.SIGTERM)


def run_test_drive(url: str, participants: int = 10, rounds: int = 1) -> subprocess.CompletedProcess[str]:
    """`xaynet test-drive -u URL` as a user runs it; it checks every global model itself."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "xaynet",
            "test-drive",
            "-u",
            url,
            "-n",
            str(participants),
            "--rounds",
            str(rounds),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Lines of a process's stdout until one contains `marker` (a deadline, not a sleep)."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"no {marker!r} in time:\n{''.join(seen)}")
