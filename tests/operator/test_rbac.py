"""RBAC is least privilege: the operator's API calls, recorded against the emulated API while it
runs through a round's life, are all allowed by k8s/operator/rbac.yaml, and every verb that file
grants is either among those calls or has a written reason here. The chart grants the same."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.operator.cluster import ROOT, Cluster, children, cluster, round_manifest
from tests.processes import redis_server, wait_until

# Granted but not called in the scenario below, each with the reason it is granted.
NOT_RECORDED = {
    ("xaynet.dev", "federatedrounds", "delete"): "spec.ttlSecondsAfterFinished deletes a finished round",
    ("xaynet.dev", "federatedrounds/finalizers", "update"): (
        "children's ownerReferences set blockOwnerDeletion, which OwnerReferencesPermissionEnforcement "
        "(OpenShift) allows only with update on the owner's finalizers; the emulator does not enforce it"
    ),
    ("networking.k8s.io", "networkpolicies", "patch"): (
        "a drifted NetworkPolicy is patched back like the Service this test drifts"
    ),
    ("monitoring.coreos.com", "servicemonitors", "create"): (
        "spec.metrics.serviceMonitor, only where the Prometheus operator's API is served (not here)"
    ),
}

_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?/(?P<plural>[^/?]+)"
    r"(?:/(?P<name>[^/?]+))?(?:/(?P<sub>[^/?]+))?$"
)


def _calls(k8s: Cluster) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every request the operator made (kubectl's are the test's)."""
    found = set()
    for line in k8s.requests():
        parts = line.split()
        if len(parts) != 3 or parts[2].startswith("kubectl"):
            continue
        method, target, _client = parts
        path, _, query = target.partition("?")
        match = _PATH.match(path)
        if match is None or path in ("/api/v1",) or (path.startswith("/apis/") and path.count("/") <= 3):
            continue  # discovery: allowed to every authenticated client
        resource = match["plural"] + (f"/{match['sub']}" if match["sub"] else "")
        if method == "GET":
            verb = "get" if match["name"] else ("watch" if "watch=true" in query else "list")
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
        found.add((match["group"] or "", resource, verb))
    return found


def _granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _kustomize_rules() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    documents = list(yaml.safe_load_all((ROOT / "k8s" / "operator" / "rbac.yaml").read_text()))
    cluster_role = next(d for d in documents if d["kind"] == "ClusterRole")
    role = next(d for d in documents if d["kind"] == "Role")
    return cluster_role["rules"], role["rules"]


def test_rbac_grants_exactly_the_calls_the_operator_makes(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis, cluster(tmp_path) as k8s:
        managed = round_manifest("owned", redis={"mode": "Managed", "storage": {"size": "1Gi"}})
        k8s.apply(managed)
        k8s.reconciled("owned")
        managed["spec"]["pet"]["sumProbability"] = 0.25  # a safe change: children patched
        k8s.apply(managed)
        k8s.reconciled("owned")
        # drift: someone edits a child; the next resync puts it back (level-triggered)
        k8s.kubectl(
            "patch",
            "service",
            "owned-coordinator",
            "--type=merge",
            "-p",
            json.dumps({"spec": {"ports": [{"name": "http", "port": 9999, "targetPort": "http"}]}}),
        )
        wait_until(
            lambda: children(k8s, "owned")["Service/owned-coordinator"]["spec"]["ports"][0]["port"] == 8081,
            60,
            "the drifted Service to be repaired",
            0.3,
        )
        external = round_manifest(
            "borrowed",
            redis={"mode": "External", "url": redis.url, "passwordSecretRef": {"name": "borrowed-redis"}},
        )
        k8s.apply(external)
        k8s.reconciled("borrowed")
        k8s.kubectl("delete", "federatedround", "borrowed", "--wait=false")
        wait_until(lambda: k8s.get("federatedround", "borrowed") is None, 60, "the finalizer to finish")
        calls = _calls(k8s)

    cluster_rules, role_rules = _kustomize_rules()
    granted = _granted(cluster_rules) | _granted(role_rules)
    assert calls - granted == set(), "calls the RBAC does not allow"
    unexplained = granted - calls - set(NOT_RECORDED)
    assert unexplained == set(), "granted, never called, and no reason written"
    stale_reasons = set(NOT_RECORDED) & calls
    assert stale_reasons == set(), "now called: drop the reason"
    assert ("coordination.k8s.io", "leases", "update") in _granted(role_rules), "the Lease: a Role"
    assert not {r for r in _granted(cluster_rules) if r[1] in ("leases", "namespaces")}


def test_rbac_of_the_chart_matches_and_is_namespaced_when_namespaces_are_listed() -> None:
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
    chart = ROOT / "charts" / "xaynet"
    cluster_rules, role_rules = _kustomize_rules()

    def render(values: dict[str, Any]) -> list[dict[str, Any]]:
        rendered = helm.Chart.load(chart).render(
            values, name="xn", namespace="xaynet-system", is_install=True
        )
        return [
            doc
            for key, text in rendered.items()
            if key.endswith(".yaml")
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    everywhere = render({})
    (cluster_role,) = [d for d in everywhere if d["kind"] == "ClusterRole"]
    assert _granted(cluster_role["rules"]) == _granted(cluster_rules)
    (lease_role,) = [d for d in everywhere if d["kind"] == "Role"]
    assert (lease_role["metadata"]["namespace"], _granted(lease_role["rules"])) == (
        "xaynet-system",
        _granted(role_rules),
    )

    listed = render({"operator": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}})
    assert not [d for d in listed if d["kind"] in ("ClusterRole", "ClusterRoleBinding")], (
        "nothing cluster-wide"
    )
    roles = {
        d["metadata"]["namespace"]: d
        for d in listed
        if d["kind"] == "Role" and "leader" not in d["metadata"]["name"]
    }
    assert set(roles) == {"team-a", "team-b"}
    for role in roles.values():
        assert _granted(role["rules"]) == _granted(cluster_rules)
    bindings = {d["metadata"]["namespace"] for d in listed if d["kind"] == "RoleBinding"}
    assert bindings == {"team-a", "team-b", "xaynet-system"}
