"""The managed Redis of a round: password Secret, Deployment and Service."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from xaynet.operator.children.common import labels, redis_name
from xaynet.operator.spec import FederatedRoundSpec

PASSWORD_KEY = "password"


def password_secret(round_name: str) -> dict[str, Any]:
    password = secrets.token_urlsafe(24)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": redis_name(round_name), "labels": labels(round_name, "redis")},
        "type": "Opaque",
        "data": {PASSWORD_KEY: base64.b64encode(password.encode()).decode()},
    }


def deployment(round_name: str, spec: FederatedRoundSpec) -> dict[str, Any]:
    name = redis_name(round_name)
    selector = labels(round_name, "redis")
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": selector},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {
                    "containers": [
                        {
                            "name": "redis",
                            "image": spec.redis.image,
                            "args": ["--requirepass", "$(REDIS_PASSWORD)", "--appendonly", "yes"],
                            "env": [
                                {
                                    "name": "REDIS_PASSWORD",
                                    "valueFrom": {"secretKeyRef": {"name": name, "key": PASSWORD_KEY}},
                                }
                            ],
                            "ports": [{"name": "redis", "containerPort": 6379}],
                            "readinessProbe": {
                                "exec": {"command": ["redis-cli", "-a", "$(REDIS_PASSWORD)", "ping"]}
                            },
                            "livenessProbe": {"tcpSocket": {"port": 6379}, "periodSeconds": 10},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        }
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
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
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
        },
    }
