"""A test cluster: the emulated API server, the real operator, and the real kubectl.

Everything runs as separate processes, so the test body can simply block on `kubectl`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.processes import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "xaynet-test"


@dataclass
class Cluster:
    directory: Path
    port: int
    apiserver: subprocess.Popen[bytes]
    operator: subprocess.Popen[bytes] | None = None
    operator_env: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig.yaml"

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [
            "kubectl",
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.directory / "kubectl-cache"),
            *args,
        ]
        result = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def apply(self, manifest: dict[str, Any] | str) -> None:
        text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest)
        self.kubectl("apply", "-f", "-", stdin=text)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.kubectl("get", kind, name, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def items(self, kind: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = json.loads(self.kubectl("get", kind, "-o", "json").stdout)["items"]
        return result

    def round_status(self, name: str) -> dict[str, Any]:
        found = self.get("federatedround", name)
        return dict((found or {}).get("status") or {})

    def wait_status(self, name: str, predicate: Any, what: str, timeout: float = 60) -> dict[str, Any]:
        result: dict[str, Any] = wait_until(
            lambda: (s := self.round_status(name)) and predicate(s) and s, timeout, what, 0.3
        )
        return result

    def start_operator(self) -> None:
        log = open(self.directory / "operator.log", "ab")  # noqa: SIM115 - owned by the process
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "XAYNET_OPERATOR_POLL_SECONDS": "0.3",
            "XAYNET_OPERATOR_RETRY_SECONDS": "1",
            **self.operator_env,
        }
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "xaynet", "operator", "-n", NAMESPACE, "--liveness-port", "0", "-v"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def stop_operator(self, sig: int = signal.SIGTERM) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(sig)
            self.operator.wait(30)

    def operator_log(self) -> str:
        path = self.directory / "operator.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def requests(self) -> list[str]:
        return (self.directory / "apiserver.log").read_text().splitlines()


@contextlib.contextmanager
def cluster(directory: Path, operator: bool = True) -> Iterator[Cluster]:
    port = free_port()
    log = open(directory / "apiserver.log", "wb")  # noqa: SIM115 - owned by the process
    apiserver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.k8s.apiserver",
            "--port",
            str(port),
            "--crd",
            str(ROOT / "crds" / "federatedround.yaml"),
            "--namespace",
            NAMESPACE,
            "--log-requests",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    running = Cluster(directory, port, apiserver)
    running.kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "contexts": [
                    {"name": "test", "context": {"cluster": "test", "user": "test", "namespace": NAMESPACE}}
                ],
                "current-context": "test",
                "users": [{"name": "test", "user": {"token": "test"}}],
            }
        )
    )
    try:
        wait_until(lambda: b"listening" in (directory / "apiserver.log").read_bytes(), 30, "the API server")
        if operator:
            running.start_operator()
        yield running
    finally:
        running.stop_operator()
        apiserver.terminate()
        apiserver.wait(10)
