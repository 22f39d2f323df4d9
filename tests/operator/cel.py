"""Evaluate a CRD's `x-kubernetes-validations` offline, the way an API server would.

The emulated API server runs no CEL, so the rules are checked here with `cel-python` (core
CEL only: a rule using a Kubernetes extension function such as `isURL` fails to evaluate).
As on a real server: defaults are applied first, a rule runs only where its field is present,
values are typed by the schema (`number` fields are doubles), and a transition rule (one that
reads `oldSelf`) runs only on an update where the field existed before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes

_MISSING = object()


@dataclass(frozen=True)
class Rule:
    path: tuple[str, ...]  # property names from the root of the object
    rule: str
    message: str

    @property
    def transition(self) -> bool:
        return "oldSelf" in self.rule


def rules(schema: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[Rule]:
    """Every rule of the schema, with the path of the field it is attached to."""
    for entry in schema.get("x-kubernetes-validations", []):
        yield Rule(path, entry["rule"], entry.get("message", entry["rule"]))
    for name, child in schema.get("properties", {}).items():
        yield from rules(child, (*path, name))


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting: missing properties with a default get it, recursively."""
    if not isinstance(value, dict):
        return value
    result = dict(value)
    for name, child in schema.get("properties", {}).items():
        if name not in result and "default" in child:
            result[name] = copy.deepcopy(child["default"])
        if name in result:
            result[name] = apply_defaults(child, result[name])
    return result


def _typed(schema: dict[str, Any], value: Any) -> Any:
    """A JSON value as the CEL value the API server would build from this schema."""
    kind = schema.get("type")
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if kind == "number" and isinstance(value, int | float):
        return celtypes.DoubleType(float(value))
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        return celtypes.MapType(
            {celtypes.StringType(k): _typed(properties.get(k, {}), v) for k, v in value.items()}
        )
    if isinstance(value, list):
        return celtypes.ListType([_typed(schema.get("items", {}), v) for v in value])
    return celpy.json_to_cel(value)


def _at(schema: dict[str, Any], value: Any, path: tuple[str, ...]) -> tuple[dict[str, Any], Any]:
    for name in path:
        if not isinstance(value, dict) or name not in value:
            return schema, _MISSING
        schema, value = schema["properties"][name], value[name]
    return schema, value


class CelError(Exception):
    """A rule that does not compile or evaluate with core CEL."""


def _evaluate(rule: Rule, variables: dict[str, Any]) -> bool:
    environment = celpy.Environment()
    try:
        program = environment.program(environment.compile(rule.rule))
        result = program.evaluate(variables)
    except Exception as error:  # celpy raises several unrelated types
        raise CelError(f"{rule.rule!r}: {str(error)[:300]}") from error
    if isinstance(result, celpy.CELEvalError) or not isinstance(result, celtypes.BoolType):
        raise CelError(f"{rule.rule!r} evaluated to {result!r}, not a bool")
    return bool(result)


def violations(schema: dict[str, Any], new: dict[str, Any], old: dict[str, Any] | None = None) -> list[Rule]:
    """The rules `new` breaks (on create when `old` is None, else on an update from `old`)."""
    new = apply_defaults(schema, new)
    old = apply_defaults(schema, old) if old is not None else None
    broken = []
    for rule in rules(schema):
        field_schema, value = _at(schema, new, rule.path)
        if value is _MISSING:
            continue
        variables = {"self": _typed(field_schema, value)}
        if rule.transition:
            if old is None:
                continue
            _, old_value = _at(schema, old, rule.path)
            if old_value is _MISSING:
                continue
            variables["oldSelf"] = _typed(field_schema, old_value)
        if not _evaluate(rule, variables):
            broken.append(rule)
    return broken
