"""Names and labels shared by every child of a FederatedRound."""

from __future__ import annotations

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
