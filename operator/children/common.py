"""Names and labels shared by every child of a FederatedRound."""

from __future__ import annotations

from typing import Any

GROUP, VERSION, PLURAL = "xaynet.dev", "v1alpha1", "federatedrounds"
COORDINATOR_PORT = 8081
MANAGED_BY = "xaynet-operator"


def labels(round_name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "xaynet",
        "app.kubernetes.io/instance": round_name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "xaynet.dev/round": round_name,
    }


def coordinator_name(round_name: str) -> str:
    return f"{round_name}-coordinator"


def redis_name(round_name: str) -> str:
    return f"{round_name}-redis"


def model_configmap_name(round_name: str) -> str:
    return f"{round_name}-global-model"


def redis_namespace(namespace: str, round_name: str) -> str:
    """The coordinator's key namespace in Redis: unique per round, so rounds can share a Redis."""
    return f"{namespace}.{round_name}"


def pod_security_context(uid: int) -> dict[str, Any]:
    """The Pod Security "restricted" level at pod scope: a fixed non-root uid, RuntimeDefault seccomp.

    `fsGroup` makes a PersistentVolume writable by that uid; `OnRootMismatch` skips the
    recursive chown on every restart of a pod with a large volume.
    """
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """The "restricted" level at container scope, plus a read-only root filesystem."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
