"""Manifests validate offline: kustomize builds, built-in kinds against Kubernetes' schemas,
custom resources against the CRD's own schema, and the chart ships the same CRD."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.operator import pod_security
from tests.operator.cluster import ROOT
from xaynet.operator.children import coordinator, redis
from xaynet.operator.children.model_configmap import model_config_map
from xaynet.operator.spec import coordinator_settings, parse_spec, render_config

K8S_VERSION = "1.30"
CRD = yaml.safe_load((ROOT / "crds" / "federatedround.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _kustomize(path: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / path)], capture_output=True, text=True, check=True, timeout=60
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _validate_builtin(document: dict[str, Any]) -> None:
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


@pytest.mark.parametrize("path", ["k8s/base", "k8s/operator", "k8s/samples", "crds", "examples"])
def test_kustomizations_build(path: str) -> None:
    assert _kustomize(path)


def test_builtin_kinds_of_the_install_validate() -> None:
    documents = _kustomize("k8s/base")
    kinds = {d["kind"] for d in documents}
    assert kinds >= {"CustomResourceDefinition", "Deployment", "Service", "ServiceAccount", "Namespace"}
    pods = 0
    for document in documents:
        _validate_builtin(document)
        for pod in pod_security.pod_specs(document):
            pods += 1
            assert pod_security.violations(pod) == [], document["metadata"]["name"]
    assert pods == 1


def test_the_install_can_pin_the_operator_image_by_digest(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(ROOT / "k8s" / "base", tmp_path)],
                "images": [{"name": "ghcr.io/xaynet/xaynet", "digest": digest}],
            }
        )
    )
    documents = _kustomize(str(tmp_path))
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"ghcr.io/xaynet/xaynet@{digest}"
    )


def test_the_operators_children_validate() -> None:
    spec = parse_spec({"modelLength": 10, "coordinator": {"resources": {"limits": {"memory": "1Gi"}}}})
    config = render_config(
        coordinator_settings(spec, namespace="ns.demo", redis_url="redis://demo-redis:6379/0")
    )
    children = [
        redis.password_secret("demo"),
        redis.deployment("demo", spec),
        redis.service("demo"),
        coordinator.config_map("demo", config),
        coordinator.deployment("demo", "ns", spec, config),
        coordinator.service("demo"),
        coordinator.metrics_service("demo"),
        model_config_map("demo", 3, b"\x01\x02", "sha256:00"),
    ]
    for child in children:
        child["metadata"]["namespace"] = "ns"
        _validate_builtin(child)


def test_a_round_runs_its_own_image_or_the_operators_default(monkeypatch: pytest.MonkeyPatch) -> None:
    def image(raw: dict[str, Any]) -> str:
        spec = parse_spec({"modelLength": 10, **raw})
        found = coordinator.deployment("demo", "ns", spec, "")["spec"]["template"]["spec"]
        return str(found["containers"][0]["image"])

    monkeypatch.delenv(coordinator.DEFAULT_IMAGE_ENV, raising=False)
    assert image({}) == coordinator.BUILT_IN_IMAGE
    monkeypatch.setenv(coordinator.DEFAULT_IMAGE_ENV, "registry.example/xaynet@sha256:" + "ab" * 32)
    assert image({}) == "registry.example/xaynet@sha256:" + "ab" * 32
    assert image({"coordinator": {"image": "mine:1"}}) == "mine:1"


def test_the_example_round_matches_the_crd_schema() -> None:
    (example,) = _kustomize("examples")
    jsonschema.Draft4Validator(SCHEMA).validate(example)
    parse_spec(example["spec"])


@pytest.mark.parametrize(
    "spec",
    [
        {"modelLength": 0},
        {"modelLength": 4, "pet": {"sumProbability": 1.5}},
        {"modelLength": 4, "pet": {"minUpdateCount": 2}},
        {"modelLength": 4, "mask": {"groupType": "Prime2"}},
        {"modelLength": "four"},
        {},
    ],
)
def test_the_crd_schema_refuses_invalid_rounds(spec: dict[str, Any]) -> None:
    document = {
        "apiVersion": "xaynet.dev/v1alpha1",
        "kind": "FederatedRound",
        "metadata": {"name": "x"},
        "spec": spec,
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(document)


def test_the_chart_ships_the_same_crd() -> None:
    chart = ROOT / "charts" / "xaynet"
    assert (chart / "crds" / "federatedround.yaml").read_text() == (
        ROOT / "crds" / "federatedround.yaml"
    ).read_text()
    assert yaml.safe_load((chart / "Chart.yaml").read_text())["name"] == "xaynet"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert {"image", "rbac", "serviceMonitor", "crds", "metrics"} <= set(values)


def test_dockerfile_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in text
    # /app/entrypoint runs `xaynet ARGS` (the pods' args); tests/test_image_contract.py runs it.
    assert 'ENTRYPOINT ["/app/entrypoint"]' in text
    assert 'exec xaynet "$@"' in (ROOT / "docker" / "entrypoint").read_text()


def test_the_crd_and_the_spec_model_agree() -> None:
    """Every CRD property exists in the pydantic model with the same default and bounds."""
    from xaynet.operator import spec as model

    def walk(schema: dict[str, Any], cls: type[Any], where: str) -> None:
        properties = schema.get("properties", {})
        fields = {field.alias or name: field for name, field in cls.model_fields.items()}
        assert set(properties) == set(fields), where
        for name, prop in properties.items():
            field = fields[name]
            annotation = field.annotation
            nested = next(
                (
                    t
                    for t in getattr(annotation, "__args__", (annotation,))
                    if isinstance(t, type) and issubclass(t, model._Model)
                ),
                None,
            )
            if prop.get("type") == "object" and nested is not None and "properties" in prop:
                walk(prop, nested, f"{where}.{name}")
                continue
            if "default" in prop:
                assert field.default == prop["default"], f"{where}.{name}"
            if "enum" in prop:
                assert set(getattr(annotation, "__args__", ())) == set(prop["enum"]), f"{where}.{name}"
            bounds = {type(m).__name__: m for m in field.metadata}
            if "minimum" in prop:
                low = bounds.get("Gt") or bounds.get("Ge")
                assert low is not None, f"{where}.{name} lower bound"
                assert (
                    getattr(low, "gt", None) if prop.get("exclusiveMinimum") else getattr(low, "ge", None)
                ) == prop["minimum"]
            if "maximum" in prop:
                high = bounds.get("Lt") or bounds.get("Le")
                assert high is not None, f"{where}.{name} upper bound"
                assert (
                    getattr(high, "lt", None) if prop.get("exclusiveMaximum") else getattr(high, "le", None)
                ) == prop["maximum"]

    walk(SCHEMA["properties"]["spec"], model.FederatedRoundSpec, "spec")
