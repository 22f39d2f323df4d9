"""FederatedRound status: conditions (Kubernetes API conventions) and the coordinator mirror.

Pure functions: `reconcile.py` computes the whole status with them and writes it in one patch.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any, Literal

PET_PHASES = {
    "idle": "Idle",
    "sum": "Sum",
    "update": "Update",
    "sum2": "Sum2",
    "unmask": "Unmask",
    "error": "Error",
}

# Every condition type the operator writes, in the order `kubectl describe` shows them.
CONDITION_TYPES = (
    "Ready",
    "Failed",
    "SpecChangeRefused",
    "Suspended",
    "RedisReady",
    "CoordinatorReady",
    "ModelPublished",
    "ModelArchived",
    "Succeeded",
)

Truth = Literal["True", "False", "Unknown"]


def now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    """What one condition says now; `conditions()` adds the times and the generation."""

    type: str
    status: Truth
    reason: str
    message: str


def truth(value: bool) -> Truth:
    return "True" if value else "False"


def conditions(
    previous: list[dict[str, Any]] | None, current: list[Condition], generation: int
) -> list[dict[str, Any]]:
    """The whole condition list: every condition carries `generation`; lastTransitionTime
    changes only when a condition's status flips (API conventions)."""
    before = {c.get("type"): c for c in previous or []}
    result = []
    for item in sorted(current, key=lambda c: CONDITION_TYPES.index(c.type)):
        old = before.get(item.type)
        flipped = old is None or old.get("status") != item.status
        result.append(
            {
                "type": item.type,
                "status": item.status,
                "reason": item.reason,
                "message": item.message,
                "lastTransitionTime": now()
                if flipped or old is None
                else old.get("lastTransitionTime", now()),
                "observedGeneration": generation,
            }
        )
    return result


def condition(conditions: list[dict[str, Any]] | None, kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions or [] if c.get("type") == kind), None)


def mirror(coordinator_status: dict[str, Any]) -> dict[str, Any]:
    """The part of the coordinator's /status that the custom resource shows."""
    counts = coordinator_status.get("counts") or {}
    phase = str(coordinator_status.get("phase"))
    return {
        "petPhase": PET_PHASES.get(phase, phase),
        "round": coordinator_status.get("round_id"),
        "counts": {phase: int((values or {}).get("accepted", 0)) for phase, values in counts.items()},
        "phaseStartedAt": coordinator_status.get("phase_started_at"),
        "roundsFailed": int(coordinator_status.get("rounds_failed") or 0),
        "lastFailure": coordinator_status.get("last_failure"),
    }
