"""FederatedRound status: conditions (Kubernetes API conventions) and the coordinator mirror."""

from __future__ import annotations

import datetime
from typing import Any

PET_PHASES = {
    "idle": "Idle",
    "sum": "Sum",
    "update": "Update",
    "sum2": "Sum2",
    "unmask": "Unmask",
    "error": "Error",
}


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(  # noqa: PLR0917 - reads like the condition it writes
    conditions: list[dict[str, Any]] | None,
    kind: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions with `kind` set; lastTransitionTime changes only when the status flips."""
    value = "True" if status else "False"
    result = []
    found = False
    for condition in conditions or []:
        if condition.get("type") != kind:
            result.append(dict(condition))
            continue
        found = True
        changed = condition.get("status") != value
        result.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now() if changed else condition.get("lastTransitionTime", now()),
                "observedGeneration": generation,
            }
        )
    if not found:
        result.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastTransitionTime": now(),
                "observedGeneration": generation,
            }
        )
    return result


def condition(conditions: list[dict[str, Any]] | None, kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == kind), None)


def mirror(coordinator_status: dict[str, Any]) -> dict[str, Any]:
    """The part of the coordinator's /status that the custom resource shows."""
    counts = coordinator_status.get("counts", {})
    return {
        "petPhase": PET_PHASES.get(
            str(coordinator_status.get("phase")), str(coordinator_status.get("phase"))
        ),
        "round": coordinator_status.get("round_id"),
        "counts": {phase: int(values.get("accepted", 0)) for phase, values in counts.items()},
        "phaseStartedAt": coordinator_status.get("phase_started_at"),
        "roundsFailed": coordinator_status.get("rounds_failed", 0),
        "lastFailure": coordinator_status.get("last_failure"),
    }
