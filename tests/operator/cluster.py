"""A test cluster: the emulated API server, the real operator, and the real kubectl.

Everything runs as separate processes, so the test body can simply block on `kubectl`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.processes import coordinator_process, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "xaynet-test"


# Short enough that a test sees a failover quickly, long enough that a busy machine does not
# make the holder miss its renewals (renew deadline = 2/3 of it).
LEASE_SECONDS = 6.0


@dataclass
class Cluster:
    directory: Path
    port: int
    apiserver: subprocess.Popen[bytes]
    # Where every round's coordinator answers (the operator's own setting; a test runs a
    # stand-in coordinator on this port).
    coordinator_port: int = field(default_factory=free_port)
    operators: list[subprocess.Popen[bytes]] = field(default_factory=list)
    operator_env: dict[str, str] = field(default_factory=dict)

    @property
    def operator(self) -> subprocess.Popen[bytes] | None:
        """The operator started last."""
        return self.operators[-1] if self.operators else None

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

    def start_operator(self, *extra: str, log_name: str = "operator.log") -> subprocess.Popen[bytes]:
        log = open(self.directory / log_name, "ab")  # noqa: SIM115 - owned by the process
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "XAYNET_OPERATOR_POLL_SECONDS": "0.3",
            "XAYNET_OPERATOR_RETRY_SECONDS": "1",
            "XAYNET_OPERATOR_COORDINATOR_URL_TEMPLATE": f"http://127.0.0.1:{self.coordinator_port}",
            **self.operator_env,
        }
        # fmt: off
        command = [
            sys.executable, "-m", "xaynet", "-v", "operator", "-n", NAMESPACE,
            "--liveness-port", "0", "--metrics-port", "0",
            "--lease-namespace", NAMESPACE, "--lease-duration", str(LEASE_SECONDS), *extra,
        ]
        # fmt: on
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.operators.append(process)
        return process

    def stop_operator(
        self, sig: int = signal.SIGTERM, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        for running in [process] if process else self.operators:
            if running.poll() is None:
                running.send_signal(sig)
                running.wait(30)

    def operator_log(self, log_name: str = "operator.log") -> str:
        path = self.directory / log_name
        return path.read_text(errors="replace") if path.exists() else ""

    def round_events(self, name: str) -> list[dict[str, Any]]:
        """The events about one round (the emulator has no field selectors: filtered here)."""
        return [
            event
            for event in self.items("events")
            if event.get("involvedObject", {}).get("kind") == "FederatedRound"
            and event["involvedObject"].get("name") == name
        ]

    def round_events_with(
        self, name: str, *reasons: str, message_end: str = "", timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """The round's events once each named reason is among them (the last one's message
        ending in `message_end`, if given). kopf posts events from a queue after the status
        patch, so a test that reads them right after a reconcile must wait for them."""

        def posted() -> list[dict[str, Any]] | None:
            events = self.round_events(name)
            for reason in reasons:
                found = [e for e in events if e.get("reason") == reason]
                if not found or not str(found[-1].get("message", "")).endswith(message_end):
                    return None
            return events

        found: list[dict[str, Any]] = wait_until(posted, timeout, f"events {reasons} of {name}")
        return found

    def reconciled(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """The round once the operator has reconciled its current generation."""
        found: dict[str, Any] = wait_until(
            lambda: (
                (r := self.get("federatedround", name))
                and (r.get("status") or {}).get("observedGeneration") == r["metadata"]["generation"]
                and r
            ),
            timeout,
            f"the operator to reconcile the current generation of {name}",
            0.3,
        )
        return found

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


EXAMPLE = yaml.safe_load((ROOT / "examples" / "round.yaml").read_text())
CRD = yaml.safe_load((ROOT / "crds" / "federatedround.yaml").read_text())


def round_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """The example round under another name, with top-level spec fields replaced."""
    manifest = copy.deepcopy(EXAMPLE)
    manifest["metadata"] = {"name": name, "namespace": NAMESPACE}
    manifest["spec"].update(spec)
    return manifest


def children(k8s: Cluster, round_name: str) -> dict[str, dict[str, Any]]:
    found = {}
    for kind in ("deployments", "services", "configmaps", "secrets"):
        for item in k8s.items(kind):
            if item["metadata"].get("labels", {}).get("xaynet.dev/round") == round_name:
                found[f"{item['kind']}/{item['metadata']['name']}"] = item
    return found


@contextlib.contextmanager
def stand_in_coordinator(k8s: Cluster, name: str, directory: Path, redis_url: str) -> Iterator[Any]:
    """Run the coordinator the Deployment would run (its ConfigMap, its environment) where the
    operator's settings say the round's coordinator answers."""
    config_map = k8s.get("configmap", f"{name}-coordinator-config")
    assert config_map is not None
    directory = directory / "coordinator"
    directory.mkdir()
    port = k8s.coordinator_port
    env = {
        "XAYNET_REDIS__URL": redis_url,
        "XAYNET_API__BIND_ADDRESS": f"127.0.0.1:{port}",
        "XAYNET_MODEL_EXPORT__DIRECTORY": str(directory / "models"),
    }
    with coordinator_process(directory, config_map["data"]["config.toml"], port, env=env) as coordinator:
        yield coordinator


def _strict(schema: Any) -> Any:
    """The CRD's structural schema as a real API server applies it: unknown fields refused."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: _strict(value) for key, value in schema.items()}
    if (
        schema.get("type") == "object"
        and "properties" in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


def assert_valid_round(found: dict[str, Any], status_only: bool = False) -> None:
    """The round, status included, passes the CRD's schema with unknown fields refused (the
    emulator keeps whatever it is sent, a real API server would prune or refuse it).
    `status_only`: the spec is invalid on purpose; check what the operator wrote."""
    if status_only:
        found = {**found, "spec": EXAMPLE["spec"]}
    schema = _strict(CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    schema["properties"].update(
        {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    )
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(found)]
    assert problems == [], problems
