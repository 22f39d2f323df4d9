"""The managed Redis of a round: password Secret, data volume, Deployment and Service.

The password never appears in a process's arguments: the container's shell writes it from
the Secret (an env var) into a config file on a memory-backed emptyDir and starts
`redis-server` with that file; the readiness probe hands it to `redis-cli` through
`REDISCLI_AUTH` and passes only on the reply `PONG` (redis-cli exits 0 on NOAUTH and
WRONGPASS, and the kubelet does not expand `$(VAR)` in an exec probe, so both need a shell).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from xaynet.operator.children.common import (
    container_security_context,
    labels,
    pod_security_context,
    redis_name,
)
from xaynet.operator.children.resources import redis_resources
from xaynet.operator.spec import FederatedRoundSpec

PASSWORD_KEY = "password"
PORT = 6379
# The uid of the `redis` user in the official images (Debian and Alpine variants alike).
REDIS_UID = 999
# Durability of what the coordinator answered "accepted": every write reaches the append-only
# file and is fsynced before Redis answers, so "accepted" survives a node crash
# (docs/durability.md has the measured cost of this vs "everysec").
APPENDFSYNC = "always"
DATA_DIR = "/data"
CONFIG_DIR = "/run/redis"


def password_secret(round_name: str) -> dict[str, Any]:
    password = secrets.token_urlsafe(24)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": redis_name(round_name), "labels": labels(round_name, "redis")},
        "type": "Opaque",
        "data": {PASSWORD_KEY: base64.b64encode(password.encode()).decode()},
    }


def data_claim_name(round_name: str) -> str:
    return f"{redis_name(round_name)}-data"


def data_claim(round_name: str, spec: FederatedRoundSpec) -> dict[str, Any] | None:
    """The PersistentVolumeClaim of `spec.redis.storage`, or None (data on an emptyDir)."""
    storage = spec.redis.storage
    if spec.redis.mode != "Managed" or storage is None:
        return None
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storage_class_name:
        claim_spec["storageClassName"] = storage.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": data_claim_name(round_name), "labels": labels(round_name, "redis")},
        "spec": claim_spec,
    }


def start_script(config_dir: str = CONFIG_DIR, data_dir: str = DATA_DIR, port: int = PORT) -> str:
    """Write redis.conf (password from $REDIS_PASSWORD, via the shell's builtin printf) and exec Redis."""
    lines = [
        f"port {port}",
        f"dir {data_dir}",
        "appendonly yes",
        f"appendfsync {APPENDFSYNC}",
        'save ""',  # the append-only file is the durable copy; no extra RDB snapshots
    ]
    settings = " ".join(f"'{line}'" for line in lines)
    return (
        'set -eu; umask 077; : "${REDIS_PASSWORD:?is empty: the Secret has no password}"; '
        f"{{ printf '%s\\n' {settings}; printf 'requirepass %s\\n' \"$REDIS_PASSWORD\"; }} "
        f"> {config_dir}/redis.conf; exec redis-server {config_dir}/redis.conf"
    )


def readiness_command(port: int = PORT) -> list[str]:
    """An exec probe that passes only when Redis answers PONG to an authenticated PING."""
    reply = f'"$(REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p {port} ping)"'
    return ["sh", "-c", f"[ {reply} = PONG ]"]


def deployment(round_name: str, spec: FederatedRoundSpec) -> dict[str, Any]:
    name = redis_name(round_name)
    selector = labels(round_name, "redis")
    claim = data_claim(round_name, spec)
    data_volume: dict[str, Any] = (
        {"name": "data", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
        if claim
        else {"name": "data", "emptyDir": {}}
    )
    container: dict[str, Any] = {
        "name": "redis",
        "image": spec.redis.image,
        "command": ["sh", "-c", start_script()],
        # Explicitly none: a patch of a Deployment written by an older operator would otherwise
        # keep its `--requirepass $(REDIS_PASSWORD)` arguments (strategic merge keeps absent keys).
        "args": [],
        "env": [
            {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": name, "key": PASSWORD_KEY}}}
        ],
        "ports": [{"name": "redis", "containerPort": PORT}],
        "readinessProbe": {
            "exec": {"command": readiness_command()},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
        },
        # TCP only: while Redis loads a large append-only file it answers LOADING to PING,
        # and a liveness failure then would restart it in a loop.
        "livenessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 10, "failureThreshold": 6},
        "resources": spec.redis.resources or redis_resources(spec.model_length),
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "config", "mountPath": CONFIG_DIR},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": selector},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # a ReadWriteOnce volume is never mounted twice
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(REDIS_UID),
                    "containers": [container],
                    "volumes": [
                        data_volume,
                        {"name": "config", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
                    ],
                },
            },
        },
    }


def service(round_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": redis_name(round_name), "labels": labels(round_name, "redis")},
        "spec": {
            "selector": labels(round_name, "redis"),
            "ports": [{"name": "redis", "port": PORT, "targetPort": "redis"}],
        },
    }
