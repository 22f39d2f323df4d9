"""NetworkPolicies of a round: participants reach the coordinator's port only, only the
coordinator reaches Redis, and neither pod opens any other connection.

Participants (and the operator, which reads the coordinator's /status, and Prometheus, which
scrapes /metrics) come from anywhere, so ingress to the coordinator is open on port 8081 and
closed on every other port. The coordinator's egress is Redis and DNS; the managed Redis has
no egress at all. Policies only add isolation where a network plugin enforces them; on a
cluster without one they are inert.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from xaynet.operator.children.common import COORDINATOR_PORT, coordinator_name, labels, redis_name
from xaynet.operator.children.redis import PORT as REDIS_PORT
from xaynet.operator.spec import FederatedRoundSpec

DNS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def _policy(name: str, round_name: str, component: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": labels(round_name, component)},
        "spec": {"podSelector": {"matchLabels": labels(round_name, component)}, **spec},
    }


def _redis_egress(round_name: str, spec: FederatedRoundSpec) -> dict[str, Any]:
    if spec.redis.mode == "Managed":
        return {
            "to": [{"podSelector": {"matchLabels": labels(round_name, "redis")}}],
            "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
        }
    # An external Redis: its address is a host name, so only the port can be pinned.
    assert spec.redis.url is not None
    return {"ports": [{"protocol": "TCP", "port": urlsplit(spec.redis.url).port or REDIS_PORT}]}


def coordinator_policy(round_name: str, spec: FederatedRoundSpec) -> dict[str, Any]:
    return _policy(
        coordinator_name(round_name),
        round_name,
        "coordinator",
        {
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"ports": [{"protocol": "TCP", "port": COORDINATOR_PORT}]}],
            "egress": [_redis_egress(round_name, spec), DNS],
        },
    )


def redis_policy(round_name: str) -> dict[str, Any]:
    return _policy(
        redis_name(round_name),
        round_name,
        "redis",
        {
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [{"podSelector": {"matchLabels": labels(round_name, "coordinator")}}],
                    "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
                }
            ],
            # No egress rule: with policyType Egress that denies all (an empty list would be
            # dropped by the API server and look like a difference on every reconcile).
        },
    )
