"""The Helm chart lints and renders offline (helm-python-sdk: Helm's library, no binary),
every manifest it renders is a valid Kubernetes object that passes Pod Security "restricted",
its values are checked by values.schema.json, and the CRD has an upgrade path."""

from __future__ import annotations

import textwrap
from typing import Any

import jsonschema
import pytest
import yaml

from tests.operator import pod_security
from tests.operator.cel import apply_defaults, violations
from tests.operator.cluster import ROOT
from tests.operator.test_manifests import K8S_VERSION, SCHEMA
from xaynet.operator.spec import parse_spec

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
CHART = ROOT / "charts" / "xaynet"
NAMESPACE = "xaynet-system"


def _rendered(values: dict[str, Any], **options: Any) -> dict[str, str]:
    options = {"name": "xn", "namespace": NAMESPACE, "is_install": True, **options}
    rendered: dict[str, str] = helm.Chart.load(CHART).render(values, **options)
    return rendered


def _render(values: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    rendered = _rendered(values, **options)
    return [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _notes(values: dict[str, Any]) -> str:
    return next(text for path, text in _rendered(values).items() if path.endswith("NOTES.txt"))


def _one(documents: list[dict[str, Any]], kind: str, hook: bool = False) -> dict[str, Any]:
    (found,) = [
        d
        for d in documents
        if d["kind"] == kind and ("helm.sh/hook" in d["metadata"].get("annotations", {})) == hook
    ]
    return found


def _operator(documents: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _one(documents, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_chart_lints_clean() -> None:
    report = helm.lint(CHART, strict=True, kube_version=f"v{K8S_VERSION}.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


VARIANTS = [
    {},
    {"operator": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}},
    {"operator": {"allNamespaces": False}},
    {"serviceMonitor": {"enabled": True, "rounds": True}, "crds": {"upgrade": True}},
    {"metrics": {"port": 0}, "rbac": {"create": False}, "serviceAccount": {"create": False}},
]


@pytest.mark.parametrize("values", VARIANTS, ids=range(len(VARIANTS)))
def test_every_rendered_object_validates_and_every_pod_is_restricted(values: dict[str, Any]) -> None:
    documents = _render(values)
    pods = 0
    for document in documents:
        if document["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # the Prometheus operator's kinds are not in Kubernetes' schemas
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        for pod in pod_security.pod_specs(document):
            pods += 1
            assert pod_security.violations(pod) == [], document["metadata"]["name"]
            for container in pod["containers"]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                assert container["resources"]["limits"]["memory"]
    assert pods == 2, "the operator and the helm test pod"


def test_defaults_render_the_operator() -> None:
    documents = _render({})
    assert {d["kind"] for d in documents} >= {"Deployment", "Service", "ServiceAccount", "Pod"}
    assert "CustomResourceDefinition" not in {d["kind"] for d in documents}, "crds/ installs it"
    container = _operator(documents)
    assert container["image"] == "ghcr.io/xaynet/xaynet:0.1.0"
    assert container["args"] == [
        "operator",
        "--all-namespaces",
        "--liveness-port=8080",
        "--metrics-port=8090",
    ]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080, "metrics": 8090}
    assert container["env"][0]["name"] == "POD_NAMESPACE"


def test_an_image_digest_pins_the_image() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    documents = _render({"image": {"tag": "9.9.9", "digest": digest}})
    assert _operator(documents)["image"] == f"ghcr.io/xaynet/xaynet@{digest}"
    test_pod = _one(documents, "Pod", hook=True)
    assert test_pod["spec"]["containers"][0]["image"] == f"ghcr.io/xaynet/xaynet@{digest}"
    assert _operator(_render({"image": {"tag": "9.9.9"}}))["image"] == "ghcr.io/xaynet/xaynet:9.9.9"


def test_rounds_without_an_image_run_the_operators_image() -> None:
    """Pushing one image to a private registry and pinning it covers every round's coordinator."""
    digest = "sha256:" + "0123456789abcdef" * 4
    values = {"image": {"repository": "registry.example/xaynet", "digest": digest}}
    env = {e["name"]: e.get("value") for e in _operator(_render(values))["env"]}
    assert env["XAYNET_OPERATOR_COORDINATOR_IMAGE"] == f"registry.example/xaynet@{digest}"


def test_listed_namespaces_are_watched() -> None:
    documents = _render({"operator": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}})
    args = _operator(documents)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    assert "team-a, team-b" in _notes(
        {"operator": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}}
    )


def test_namespaced_mode_without_a_list_watches_the_release_namespace() -> None:
    """Not an operator that exits at start: the release's own namespace is watched, and said so."""
    values = {"operator": {"allNamespaces": False, "namespaces": []}}
    args = _operator(_render(values))["args"]
    assert [a for a in args if a.startswith("--namespace")] == [f"--namespace={NAMESPACE}"]
    assert "--all-namespaces" not in args
    notes = _notes(values)
    assert f"the namespace(s): {NAMESPACE}" in notes
    assert f"kubectl apply -n {NAMESPACE}" in notes


def test_the_notes_say_how_to_apply_get_and_port_forward() -> None:
    notes = _notes({})
    for command in ("kubectl apply", "kubectl get rounds", "kubectl port-forward", "helm test xn"):
        assert command in notes
    assert "kubectl apply --server-side -f charts/xaynet/crds/" in notes
    assert "--server-side" not in _notes({"crds": {"upgrade": True}})


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"operator": {"namespace": "team-a"}}, "namespace"),
        ({"operator": {"namespaces": ["Team_A"]}}, "namespaces"),
        ({"image": {"digest": "sha256:abc"}}, "digest"),
        ({"metrics": {"port": 8080}}, "port"),
        ({"operator": {"allNamespaces": "yes"}}, "allNamespaces"),
        ({"crds": {"upgrade": "true"}}, "upgrade"),
    ],
)
def test_values_schema_refuses_mistakes(values: dict[str, Any], field: str) -> None:
    with pytest.raises(helm.HelmError) as refused:
        _render(values)
    assert "values don't meet the specifications of the schema" in str(refused.value)
    assert field in str(refused.value)


def test_the_crd_can_be_upgraded_by_helm() -> None:
    source = yaml.safe_load((ROOT / "crds" / "federatedround.yaml").read_text())
    assert (CHART / "crds" / "federatedround.yaml").read_text() == (
        ROOT / "crds" / "federatedround.yaml"
    ).read_text()

    crd = _one(
        _render({"crds": {"upgrade": True}}, is_install=False, is_upgrade=True), "CustomResourceDefinition"
    )
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert crd["spec"] == source["spec"], "the templated CRD is the one in crds/, unchanged"
    kubernetes_validate.validate(crd, K8S_VERSION, strict=True)

    unkept = _one(_render({"crds": {"upgrade": True, "keep": False}}), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]


def test_service_monitors_scrape_the_operator_and_the_rounds() -> None:
    documents = _render(
        {
            "operator": {"allNamespaces": False, "namespaces": ["team-a"]},
            "serviceMonitor": {"enabled": True, "rounds": True, "interval": "30s"},
        }
    )
    service = _one(documents, "Service")
    monitors = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ServiceMonitor"}
    operator = monitors["xn-xaynet-operator"]
    selector = operator["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert operator["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert operator["spec"]["endpoints"][0]["interval"] == "30s"
    rounds = monitors["xn-xaynet-rounds"]
    assert rounds["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    assert rounds["spec"]["selector"]["matchLabels"] == {"xaynet.dev/metrics": "true"}

    only_operator = _render({"serviceMonitor": {"enabled": True}})
    assert [d["metadata"]["name"] for d in only_operator if d["kind"] == "ServiceMonitor"] == [
        "xn-xaynet-operator"
    ]
    assert not [d for d in _render({}) if d["kind"] == "ServiceMonitor"]


def test_helm_test_checks_the_operator_answers() -> None:
    pod = _one(_render({}), "Pod", hook=True)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    assert f"http://xn-xaynet-operator.{NAMESPACE}.svc" in script
    assert ":8080/healthz" in script and ":8090/metrics" in script
    compile(script, "helm-test", "exec")  # the check itself is valid Python

    without_metrics = _render({"metrics": {"port": 0}})
    script = _one(without_metrics, "Pod", hook=True)["spec"]["containers"][0]["args"][0]
    assert "/metrics" not in script
    assert [p["name"] for p in _operator(without_metrics)["ports"]] == ["health"]
    assert "--metrics-port=0" in _operator(without_metrics)["args"]


def test_the_round_in_the_notes_is_valid() -> None:
    notes = _notes({})
    body = notes.split("-f - <<EOF\n", 1)[1].split("\n  EOF", 1)[0]
    round_ = yaml.safe_load(textwrap.dedent(body))
    assert round_["kind"] == "FederatedRound"
    jsonschema.Draft4Validator(SCHEMA).validate(apply_defaults(SCHEMA, round_))
    assert violations(SCHEMA, round_) == []
    parse_spec(round_["spec"], name=round_["metadata"]["name"])
