"""Every child the operator writes is a valid object, passes Pod Security "restricted", keeps
the Redis password out of process arguments, is sized from modelLength, and is fenced by
NetworkPolicies that let participants reach the coordinator's port and nothing else."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.operator import pod_security
from tests.operator.cluster import ROOT
from tests.operator.test_manifests import K8S_VERSION
from xaynet.operator.children import coordinator, network_policy, redis
from xaynet.operator.children.common import COORDINATOR_PORT, labels
from xaynet.operator.children.model_configmap import model_config_map
from xaynet.operator.spec import FederatedRoundSpec, coordinator_settings, parse_spec, render_config

MANAGED = parse_spec({"modelLength": 10})
STORED = parse_spec(
    {"modelLength": 10, "redis": {"storage": {"size": "5Gi", "storageClassName": "fast-ssd"}}}
)
EXTERNAL = parse_spec(
    {
        "modelLength": 10,
        "redis": {
            "mode": "External",
            "url": "rediss://redis.shared:6380/3",
            "passwordSecretRef": {"name": "r"},
        },
    }
)


def _children(spec: FederatedRoundSpec) -> list[dict[str, Any]]:
    config = render_config(
        coordinator_settings(spec, namespace="ns.demo", redis_url="redis://demo-redis:6379/0")
    )
    children = [
        coordinator.config_map("demo", config),
        coordinator.deployment("demo", "ns", spec, config),
        coordinator.service("demo"),
        coordinator.metrics_service("demo"),
        network_policy.coordinator_policy("demo", spec),
        model_config_map("demo", 3, b"\x01\x02", "sha256:00"),
    ]
    if spec.redis.mode == "Managed":
        claim = redis.data_claim("demo", spec)
        children += [
            redis.password_secret("demo"),
            redis.deployment("demo", spec),
            redis.service("demo"),
            network_policy.redis_policy("demo"),
            *([claim] if claim else []),
        ]
    for child in children:
        child["metadata"]["namespace"] = "ns"
    return children


@pytest.mark.parametrize("spec", [MANAGED, STORED, EXTERNAL], ids=["managed", "stored", "external"])
def test_every_child_validates_and_every_pod_is_restricted(spec: FederatedRoundSpec) -> None:
    pods = 0
    for child in _children(spec):
        kubernetes_validate.validate(child, K8S_VERSION, strict=True)
        for pod in pod_security.pod_specs(child):
            pods += 1
            assert pod_security.violations(pod) == [], child["metadata"]["name"]
            assert pod["automountServiceAccountToken"] is False
            for container in pod["containers"]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                assert container["resources"]["requests"]["memory"]
                assert container["resources"]["limits"]["memory"]
    assert pods == (2 if spec.redis.mode == "Managed" else 1)


def test_the_checker_refuses_what_the_restricted_level_refuses() -> None:
    """The helper can fail: the children as they were before this check all break it."""
    old_coordinator = {
        "containers": [
            {
                "name": "coordinator",
                "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
            }
        ],
        "volumes": [{"name": "models", "emptyDir": {}}],
    }
    assert pod_security.violations(old_coordinator) == [
        "container coordinator: seccompProfile must be RuntimeDefault or Localhost, not None",
        "container coordinator: capabilities must drop ALL",
    ]
    old_redis = {"containers": [{"name": "redis"}], "volumes": [{"name": "host", "hostPath": {"path": "/"}}]}
    assert len(pod_security.violations(old_redis)) == 5


def test_the_redis_password_is_never_in_process_arguments() -> None:
    secret = redis.password_secret("demo")
    password = secret["data"][redis.PASSWORD_KEY]
    for spec in (MANAGED, STORED):
        deployment = redis.deployment("demo", spec)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        argv = json.dumps([container.get("command"), container.get("args"), container["readinessProbe"]])
        assert password not in argv
        assert "$(REDIS_PASSWORD)" not in argv, "the kubelet would expand it into argv (or not at all)"
        assert "--requirepass" not in argv
        assert container["args"] == [], "replaces the arguments of a Deployment of an older operator"
        (env,) = container["env"]
        assert env == {
            "name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "demo-redis", "key": redis.PASSWORD_KEY}},
        }
        assert "appendonly yes" in container["command"][2]
        assert f"appendfsync {redis.APPENDFSYNC}" in container["command"][2]


def test_redis_data_goes_to_the_claim_when_storage_is_set() -> None:
    assert redis.data_claim("demo", MANAGED) is None
    volumes = {v["name"]: v for v in redis.deployment("demo", MANAGED)["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}

    claim = redis.data_claim("demo", STORED)
    assert claim is not None
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": "fast-ssd",
    }
    pod = redis.deployment("demo", STORED)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "demo-redis-data"}
    assert pod["securityContext"]["fsGroup"] == redis.REDIS_UID, "the volume must be writable by redis"
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["data"] == redis.DATA_DIR


@pytest.mark.parametrize(
    ("length", "coordinator_memory", "redis_memory"),
    [(4, "129Mi", "65Mi"), (100_000, "226Mi", "71Mi"), (10_000_000, "9894Mi", "675Mi")],
)
def test_default_resources_grow_with_the_model(
    length: int, coordinator_memory: str, redis_memory: str
) -> None:
    spec = parse_spec({"modelLength": length})
    config = render_config(coordinator_settings(spec, namespace="ns.demo", redis_url=None))
    (c,) = coordinator.deployment("demo", "ns", spec, config)["spec"]["template"]["spec"]["containers"]
    (r,) = redis.deployment("demo", spec)["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["requests"]["memory"] == coordinator_memory
    assert r["resources"]["requests"]["memory"] == redis_memory
    assert c["resources"]["limits"]["memory"] == f"{2 * int(coordinator_memory[:-2])}Mi"
    assert "cpu" not in c["resources"]["limits"]


def test_resources_in_the_spec_replace_the_defaults() -> None:
    mine = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    spec = parse_spec({"modelLength": 4, "coordinator": {"resources": mine}, "redis": {"resources": mine}})
    (c,) = coordinator.deployment("demo", "ns", spec, "")["spec"]["template"]["spec"]["containers"]
    (r,) = redis.deployment("demo", spec)["spec"]["template"]["spec"]["containers"]
    assert c["resources"] == mine
    assert r["resources"] == mine


def test_images_may_be_pinned_by_digest() -> None:
    digest = "sha256:" + "a" * 64
    spec = parse_spec(
        {
            "modelLength": 4,
            "coordinator": {"image": f"ghcr.io/xaynet/xaynet@{digest}"},
            "redis": {"image": f"redis:7-alpine@{digest}"},
        }
    )
    (c,) = coordinator.deployment("demo", "ns", spec, "")["spec"]["template"]["spec"]["containers"]
    (r,) = redis.deployment("demo", spec)["spec"]["template"]["spec"]["containers"]
    assert c["image"].endswith(digest)
    assert r["image"].endswith(digest)


# --- NetworkPolicy semantics: who may open a connection to whom, on which port -------------


def _selects(selector: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    return all(pod_labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def _port_allowed(rule: dict[str, Any], port: int) -> bool:
    return not rule.get("ports") or any(p["port"] == port for p in rule["ports"])


def _peer_allowed(peers: list[dict[str, Any]] | None, peer_labels: dict[str, str] | None) -> bool:
    if not peers:
        return True  # no `from`/`to`: any peer
    return peer_labels is not None and any(
        "podSelector" in p and "namespaceSelector" not in p and _selects(p["podSelector"], peer_labels)
        for p in peers
    )


def _allowed(
    policies: list[dict[str, Any]],
    source: dict[str, str] | None,
    target: dict[str, str] | None,
    port: int,
) -> bool:
    """Same-namespace pods (None: outside the cluster's pods); isolation only where selected."""

    def direction(pod: dict[str, str] | None, kind: str, peer: dict[str, str] | None) -> bool:
        if pod is None:
            return True
        selecting = [
            p
            for p in policies
            if _selects(p["spec"]["podSelector"], pod) and kind in p["spec"]["policyTypes"]
        ]
        if not selecting:
            return True
        key, peers = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        return any(
            _port_allowed(rule, port) and _peer_allowed(rule.get(peers), peer)
            for policy in selecting
            for rule in policy["spec"].get(key, [])
        )

    return direction(source, "Egress", target) and direction(target, "Ingress", source)


OPERATOR_LABELS = [
    yaml.safe_load((ROOT / "k8s" / "operator" / "deployment.yaml").read_text())["spec"]["template"][
        "metadata"
    ]["labels"]
]


def test_network_policies_fence_the_round() -> None:
    policies = [network_policy.coordinator_policy("demo", MANAGED), network_policy.redis_policy("demo")]
    coordinator_pod, redis_pod = labels("demo", "coordinator"), labels("demo", "redis")
    participant = {"app": "participant"}
    other_round = labels("other", "coordinator")

    assert _allowed(policies, participant, coordinator_pod, COORDINATOR_PORT)
    assert _allowed(policies, None, coordinator_pod, COORDINATOR_PORT), "participants outside the cluster"
    for operator in OPERATOR_LABELS:
        assert _allowed(policies, operator, coordinator_pod, COORDINATOR_PORT), "the operator reads /status"
    assert not _allowed(policies, participant, coordinator_pod, 22)
    assert not _allowed(policies, participant, redis_pod, redis.PORT)
    assert not _allowed(policies, other_round, redis_pod, redis.PORT), "another round's coordinator"
    assert _allowed(policies, coordinator_pod, redis_pod, redis.PORT)
    assert not _allowed(policies, coordinator_pod, redis_pod, 22)
    assert not _allowed(policies, coordinator_pod, participant, 443), "the coordinator calls nobody"
    assert _allowed(policies, coordinator_pod, None, 53), "DNS"
    assert not _allowed(policies, redis_pod, None, 443), "Redis has no egress"
    assert not _allowed(policies, redis_pod, coordinator_pod, COORDINATOR_PORT)


def test_an_external_redis_is_reached_on_its_port_only() -> None:
    policy = network_policy.coordinator_policy("demo", EXTERNAL)
    coordinator_pod = labels("demo", "coordinator")
    assert _allowed([policy], coordinator_pod, None, 6380)
    assert not _allowed([policy], coordinator_pod, None, 6379)


@pytest.mark.parametrize("spec", [MANAGED, STORED, EXTERNAL], ids=["managed", "stored", "external"])
def test_everything_provision_writes_is_valid_and_restricted(
    spec: FederatedRoundSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a list kept in this test: the objects `provision()` itself sends to the API."""
    from xaynet.operator import kube, provision

    written: list[dict[str, Any]] = []

    async def ensure(namespace: str, body: dict[str, Any], update: bool = True) -> tuple[str, dict[str, Any]]:
        written.append(body)
        return "created", body

    async def ensure_custom(namespace: str, body: dict[str, Any], plural: str) -> None:
        written.append(body)

    async def serves_group(group: str) -> bool:
        return True

    monkeypatch.setattr(kube, "ensure", ensure)
    monkeypatch.setattr(kube, "ensure_custom", ensure_custom)
    monkeypatch.setattr(kube, "serves_group", serves_group, raising=False)
    owner = {
        "apiVersion": "xaynet.dev/v1alpha1",
        "kind": "FederatedRound",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "0c6e4f3a-0000-4000-8000-000000000001"},
        "spec": spec.model_dump(by_alias=True),
    }
    asyncio.run(provision.provision(owner, spec))
    kinds = sorted(child["kind"] for child in written)
    assert "NetworkPolicy" in kinds and "PodDisruptionBudget" not in kinds
    assert ("PersistentVolumeClaim" in kinds) == (spec.redis.storage is not None)
    pods = 0
    for child in written:
        if child["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        placed = {**child, "metadata": {**child["metadata"], "namespace": "ns"}}
        kubernetes_validate.validate(placed, K8S_VERSION, strict=True)
        for pod in pod_security.pod_specs(placed):
            pods += 1
            assert pod_security.violations(pod) == [], child["metadata"]["name"]
    assert pods == (2 if spec.redis.mode == "Managed" else 1)
