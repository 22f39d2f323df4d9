"""The CRD's CEL rules, evaluated offline against good and bad rounds and old/new pairs.

A real API server refuses these rounds at `kubectl apply`; the emulated one does not run CEL,
so the operator keeps its own checks (`parse_spec`) and every create-time case below is also
refused there, naming the same field.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from tests.operator.cel import Rule, apply_defaults, rules, violations
from tests.operator.cluster import ROOT
from xaynet.operator.spec import InvalidSpecError, parse_spec

CRD = yaml.safe_load((ROOT / "crds" / "federatedround.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
EXAMPLE = yaml.safe_load((ROOT / "examples" / "round.yaml").read_text())
# The rules on what users write (the status subtree is the operator's, tested with it).
ALL_RULES = [rule for rule in rules(SCHEMA) if rule.path[:1] != ("status",)]
# Kubernetes' CEL library functions that offline CEL libraries cannot evaluate.
EXTENSIONS = ("isURL", "url(", "quantity(", "isQuantity", "ip(", "cidr(", "isIP", "isCIDR", "format.")


def _round(name: str = "demo", **spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(EXAMPLE)
    document["metadata"] = {"name": name}
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(document["spec"].get(key), dict):
            document["spec"][key] = {**document["spec"][key], **value}
        else:
            document["spec"][key] = value
    return document


def _messages(broken: list[Rule]) -> list[str]:
    return [rule.message for rule in broken]


def test_the_rules_use_core_cel_only() -> None:
    assert len(ALL_RULES) >= 15
    for rule in rules(SCHEMA):
        assert not any(name in rule.rule for name in EXTENSIONS), rule.rule


def test_the_example_and_a_long_valid_name_pass_every_rule() -> None:
    assert violations(SCHEMA, EXAMPLE) == []
    assert violations(SCHEMA, _round("a" * 51)) == []
    assert violations(SCHEMA, EXAMPLE, old=EXAMPLE) == []
    jsonschema.Draft4Validator(SCHEMA).validate(apply_defaults(SCHEMA, EXAMPLE))


# Create-time mistakes: (round, the field every message names).
BAD_ROUNDS = {
    "name too long for '<name>-coordinator'": (_round("a" * 52), "metadata.name"),
    "name starting with a digit": (_round("9lives"), "metadata.name"),
    "name with a dot": (_round("team.round"), "metadata.name"),
    "minSumCount > maxSumCount": (
        _round(pet={"minSumCount": 5, "maxSumCount": 4, "maxSum2Count": 4}),
        "spec.pet.minSumCount",
    ),
    "minUpdateCount > maxUpdateCount": (
        _round(pet={"minUpdateCount": 9, "maxUpdateCount": 8}),
        "spec.pet.minUpdateCount",
    ),
    "minSum2Count > maxSum2Count": (
        _round(pet={"minSum2Count": 3, "maxSum2Count": 2}),
        "spec.pet.minSum2Count",
    ),
    "maxSum2Count > maxSumCount": (
        _round(pet={"maxSumCount": 5, "maxSum2Count": 6, "minSum2Count": 1}),
        "spec.pet.maxSum2Count",
    ),
    "minSumTime > maxSumTime": (_round(pet={"minSumTime": 10, "maxSumTime": 9.5}), "spec.pet.minSumTime"),
    "minUpdateTime > maxUpdateTime": (
        _round(pet={"minUpdateTime": 61, "maxUpdateTime": 60}),
        "spec.pet.minUpdateTime",
    ),
    "minSum2Time > maxSum2Time": (_round(pet={"minSum2Time": 2, "maxSum2Time": 1}), "spec.pet.minSum2Time"),
    "more updates than M3 aggregates": (_round(pet={"maxUpdateCount": 1001}), "spec.pet.maxUpdateCount"),
    "more sums than M3 aggregates": (
        _round(pet={"maxSumCount": 1001, "maxSum2Count": 10}),
        "spec.pet.maxSumCount",
    ),
    "External without url": (_round(redis={"mode": "External"}), "spec.redis.url"),
    "Managed with a url": (_round(redis={"mode": "Managed", "url": "redis://r:6379/0"}), "spec.redis.url"),
    "External with storage": (
        _round(redis={"mode": "External", "url": "redis://r:6379/0", "storage": {"size": "1Gi"}}),
        "spec.redis.storage",
    ),
    "url carrying a password": (
        _round(redis={"mode": "External", "url": "redis://:secret@r:6379/0"}),
        "spec.redis.url",
    ),
    "url of another scheme": (_round(redis={"mode": "External", "url": "http://r:6379"}), "spec.redis.url"),
}


@pytest.mark.parametrize("case", list(BAD_ROUNDS))
def test_a_bad_round_is_refused_by_the_api_and_by_the_operator(case: str) -> None:
    document, field = BAD_ROUNDS[case]
    broken = violations(SCHEMA, document)
    assert broken, case
    assert all(field in message for message in _messages(broken)), _messages(broken)
    with pytest.raises(InvalidSpecError) as refused:
        parse_spec(document["spec"], name=document["metadata"]["name"])
    assert field in str(refused.value)


def test_the_same_rounds_pass_once_corrected() -> None:
    assert violations(SCHEMA, _round(pet={"maxUpdateCount": 1001}, mask={"modelType": "M6"})) == []
    external = _round(redis={"mode": "External", "url": "rediss://redis.example:6380/2"})
    assert violations(SCHEMA, external) == []
    parse_spec(external["spec"], name="demo")
    stored = _round(redis={"mode": "Managed", "storage": {"size": "2Gi", "storageClassName": "fast"}})
    assert violations(SCHEMA, stored) == []
    parse_spec(stored["spec"], name="demo")


# Updates: (old, new, the field every message names); a refused update changes nothing.
UNSAFE_UPDATES = {
    "modelLength": (_round(), _round(modelLength=99), "spec.modelLength"),
    "mask": (_round(), _round(mask={"groupType": "Integer"}), "spec.mask"),
    "redis mode": (_round(), _round(redis={"mode": "External", "url": "redis://r:6379/0"}), "spec.redis"),
    "redis storage added": (_round(), _round(redis={"storage": {"size": "1Gi"}}), "spec.redis"),
    "redis image": (_round(), _round(redis={"image": "redis:7.2"}), "spec.redis"),
}


@pytest.mark.parametrize("case", list(UNSAFE_UPDATES))
def test_unsafe_fields_are_immutable(case: str) -> None:
    old, new, field = UNSAFE_UPDATES[case]
    broken = violations(SCHEMA, new, old=old)
    assert [rule.path for rule in broken] == [tuple(field.split("."))]
    assert "immutable" in broken[0].message
    assert violations(SCHEMA, new) == [], "the same spec is fine on create"


def test_safe_fields_may_change() -> None:
    old = _round()
    new = _round(pet={"minSumCount": 2}, rounds=5, suspend=True, coordinator={"logFilter": "debug"})
    assert violations(SCHEMA, new, old=old) == []
    # Writing out a default explicitly is no change.
    assert violations(SCHEMA, _round(mask={"modelType": "M3"}), old=_round(mask={})) == []


def test_every_rule_is_exercised_by_a_refusal() -> None:
    refused = {rule for document, _ in BAD_ROUNDS.values() for rule in violations(SCHEMA, document)}
    refused |= {rule for old, new, _ in UNSAFE_UPDATES.values() for rule in violations(SCHEMA, new, old=old)}
    assert refused == set(ALL_RULES), {r.rule for r in set(ALL_RULES) - refused}


@pytest.mark.parametrize("length", [0, 10_000_001, 4294967295])
def test_model_length_has_an_explicit_bound(length: int) -> None:
    document = apply_defaults(SCHEMA, _round(modelLength=length))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(document)
    with pytest.raises(InvalidSpecError, match=r"spec\.modelLength"):
        parse_spec(document["spec"])


EXTERNAL = {"mode": "External", "url": "redis://r:6379/0"}


@pytest.mark.parametrize(
    "spec",
    [
        {"redis": {**EXTERNAL, "passwordSecretRef": {"name": "x" * 254}}},
        {"redis": {**EXTERNAL, "passwordSecretRef": {"name": "r", "key": "a/b"}}},
        {"redis": {**EXTERNAL, "url": "redis://" + "h" * 2048}},
        {"redis": {"storage": {"size": "lots"}}},
        {"redis": {"storage": {"size": "1Gi", "storageClassName": "Fast_SSD"}}},
        {"coordinator": {"image": "x" * 513}},
        {"coordinator": {"logFilter": "x" * 1025}},
    ],
)
def test_name_bearing_strings_are_bounded(spec: dict[str, Any]) -> None:
    document = _round(**spec)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(SCHEMA).validate(apply_defaults(SCHEMA, document))
    with pytest.raises(InvalidSpecError):
        parse_spec(document["spec"])
