"""The operator's own Prometheus metrics (`--metrics-port`), apart from every coordinator's.

Reconciles and their errors by trigger, the rounds by phase as last reconciled, and whether
this replica holds the leader Lease (a standby replica serves metrics too, with leader 0).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

REGISTRY = CollectorRegistry()
RECONCILES = Counter(
    "xaynet_operator_reconciles",
    "Reconciles of a FederatedRound, by what triggered them",
    ["trigger"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "xaynet_operator_reconcile_errors",
    "Reconciles that failed (retried at the next trigger or resync)",
    ["trigger"],
    registry=REGISTRY,
)
ROUNDS = Gauge(
    "xaynet_operator_rounds",
    "FederatedRounds by phase, as last reconciled by this replica",
    ["phase"],
    registry=REGISTRY,
)
LEADER = Gauge(
    "xaynet_operator_leader",
    "1 while this replica holds the leader Lease and acts, else 0",
    registry=REGISTRY,
)

PHASES = ("Provisioning", "Running", "Suspended", "Succeeded", "Failed")
_phases: dict[tuple[str, str], str] = {}


def round_phase(namespace: str, name: str, phase: str | None) -> None:
    """Record a round's phase (None: the round is gone) and refresh the per-phase gauge."""
    if phase is None:
        _phases.pop((namespace, name), None)
    else:
        _phases[(namespace, name)] = phase
    for known in {*PHASES, *_phases.values()}:
        ROUNDS.labels(phase=known).set(sum(1 for p in _phases.values() if p == known))


def serve(port: int) -> None:
    """Serve /metrics on `port` (0: do not serve)."""
    if port:
        start_http_server(port, registry=REGISTRY)
