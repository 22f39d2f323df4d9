"""The Helm chart lints and renders offline (helm-python-sdk: Helm's library, no binary),
and every manifest it renders is a valid Kubernetes object."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.operator.cluster import ROOT
from tests.operator.test_manifests import K8S_VERSION

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
CHART = ROOT / "charts" / "xaynet"


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    rendered = helm.Chart.load(CHART).render(values, name="xn", namespace="xaynet-system", is_install=True)
    return [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]


def test_the_chart_lints_clean() -> None:
    report = helm.lint(CHART, strict=True, kube_version=f"v{K8S_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_defaults_render_the_operator_with_least_privilege() -> None:
    documents = _render({})
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "ServiceAccount"]
    for document in documents:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/xaynet/xaynet:0.1.0"
    assert container["args"] == ["operator", "--all-namespaces", "--liveness-port=8080"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    assert all("*" not in rule["verbs"] and "*" not in rule["resources"] for rule in role["rules"])


def test_values_change_image_scope_rbac_and_monitoring() -> None:
    documents = _render(
        {
            "image": {"tag": "9.9.9"},
            "operator": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]},
            "rbac": {"create": False},
            "serviceMonitor": {"enabled": True},
        }
    )
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["Deployment", "ServiceAccount", "ServiceMonitor"]
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].endswith(":9.9.9")
    assert "--namespace=team-a" in container["args"]
    assert "--all-namespaces" not in container["args"]
    monitor = next(d for d in documents if d["kind"] == "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {"xaynet.dev/metrics": "true"}
