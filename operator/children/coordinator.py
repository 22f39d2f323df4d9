"""The coordinator of a round: config.toml ConfigMap, Deployment, Service, metrics."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from xaynet.operator.children.common import (
    COORDINATOR_PORT,
    container_security_context,
    coordinator_name,
    labels,
    pod_security_context,
    redis_name,
)
from xaynet.operator.children.redis import PASSWORD_KEY
from xaynet.operator.children.resources import coordinator_resources
from xaynet.operator.spec import FederatedRoundSpec

CONFIG_KEY = "config.toml"
# The image's `xaynet` user (Dockerfile: USER 10001).
COORDINATOR_UID = 10001


def config_map(round_name: str, config_toml: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{coordinator_name(round_name)}-config",
            "labels": labels(round_name, "coordinator"),
        },
        "data": {CONFIG_KEY: config_toml},
    }


def _redis_env(round_name: str, namespace: str, spec: FederatedRoundSpec) -> list[dict[str, Any]]:
    secret: dict[str, str] | None
    if spec.redis.mode == "Managed":
        host = f"{redis_name(round_name)}.{namespace}.svc"
        secret = {"name": redis_name(round_name), "key": PASSWORD_KEY}
        url = f"redis://{host}:6379/0"
    else:
        assert spec.redis.url is not None
        reference = spec.redis.password_secret_ref
        secret = {"name": reference.name, "key": reference.key} if reference else None
        url = spec.redis.url
    # the password as its own variable, never spliced into the URL: any character works
    env: list[dict[str, Any]] = [{"name": "XAYNET_REDIS__URL", "value": url}]
    if secret:
        env.append({"name": "XAYNET_REDIS__PASSWORD", "valueFrom": {"secretKeyRef": secret}})
    return env


def _s3_env(spec: FederatedRoundSpec) -> list[dict[str, Any]]:
    """The S3 archive's keys from the referenced Secret, as the original's variables."""
    s3 = spec.model_export.s3
    if s3 is None:
        return []
    ref = s3.credentials_secret_ref
    return [
        {
            "name": "XAYNET_S3__ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.access_key_key}},
        },
        {
            "name": "XAYNET_S3__SECRET_ACCESS_KEY",
            "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.secret_key_key}},
        },
    ]


DEFAULT_IMAGE_ENV = "XAYNET_OPERATOR_COORDINATOR_IMAGE"
BUILT_IN_IMAGE = "ghcr.io/xaynet/xaynet:0.1.0"


def default_image() -> str:
    """The image of rounds that do not name one. The chart sets it to the operator's own image,
    so pushing one image to a private registry (and pinning it by digest) covers every round;
    without the chart, the published image of this release."""
    return os.environ.get(DEFAULT_IMAGE_ENV) or BUILT_IN_IMAGE


def deployment(round_name: str, namespace: str, spec: FederatedRoundSpec, config_toml: str) -> dict[str, Any]:
    selector = labels(round_name, "coordinator")
    checksum = hashlib.sha256(config_toml.encode()).hexdigest()[:16]
    replicas = 0 if spec.suspend else spec.coordinator.replicas
    container: dict[str, Any] = {
        "name": "coordinator",
        "image": spec.coordinator.image or default_image(),
        "args": ["coordinator", "--config", f"/etc/xaynet/{CONFIG_KEY}"],
        "env": _redis_env(round_name, namespace, spec) + _s3_env(spec),
        "ports": [{"name": "http", "containerPort": COORDINATOR_PORT}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/xaynet", "readOnly": True},
            {"name": "models", "mountPath": "/models"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": spec.coordinator.resources or coordinator_resources(spec.model_length),
        "securityContext": container_security_context(),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": coordinator_name(round_name), "labels": selector},
        "spec": {
            "replicas": replicas,
            # Recreate: a rollout never waits for a standby to become ready (standbys stay
            # not-ready while another replica holds the round's lease: docs/high-availability.md)
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector, "annotations": {"xaynet.dev/config-checksum": checksum}},
                "spec": {
                    "automountServiceAccountToken": False,  # the coordinator never calls the API
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(COORDINATOR_UID),
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": f"{coordinator_name(round_name)}-config"}},
                        {"name": "models", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def service(round_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": coordinator_name(round_name), "labels": labels(round_name, "coordinator")},
        "spec": {
            "selector": labels(round_name, "coordinator"),
            "ports": [{"name": "http", "port": COORDINATOR_PORT, "targetPort": "http"}],
        },
    }


def metrics_service(round_name: str) -> dict[str, Any]:
    service_labels = {**labels(round_name, "coordinator"), "xaynet.dev/metrics": "true"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{round_name}-metrics", "labels": service_labels},
        "spec": {
            "selector": labels(round_name, "coordinator"),
            "ports": [{"name": "metrics", "port": COORDINATOR_PORT, "targetPort": "http"}],
        },
    }


def service_monitor(round_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": f"{round_name}-metrics", "labels": labels(round_name, "coordinator")},
        "spec": {
            "selector": {"matchLabels": {"xaynet.dev/round": round_name, "xaynet.dev/metrics": "true"}},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }
