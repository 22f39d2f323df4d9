"""Prometheus metrics of one coordinator (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from xaynet.coordinator.store.base import Phase

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_PHASE_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class CoordinatorMetrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.round_id = Gauge("xaynet_round_id", "Id of the current round", registry=r)
        self.phase = Gauge("xaynet_phase", "1 for the coordinator's current PET phase", ["phase"], registry=r)
        self.phase_duration = Histogram(
            "xaynet_phase_duration_seconds",
            "How long each phase lasted",
            ["phase"],
            buckets=_PHASE_BUCKETS,
            registry=r,
        )
        self.messages = Counter(
            "xaynet_messages_total",
            "POST /message outcomes by phase, outcome and reason",
            ["phase", "outcome", "reason"],
            registry=r,
        )
        self.in_progress = Gauge(
            "xaynet_messages_in_progress",
            "POST /message requests between their headers and their answer (uploads included)",
            registry=r,
        )
        self.opened = Counter(
            "xaynet_message_bodies_opened_total",
            "Message bodies opened on the event loop (small, or a large one arriving alone) or in the "
            "thread pool (large ones arriving together)",
            ["where"],
            registry=r,
        )
        self.received_bytes = Counter(
            "xaynet_received_bytes_total", "Bytes of POST /message bodies", registry=r
        )
        self.unique_masks = Gauge(
            "xaynet_unique_masks", "Distinct masks submitted in Sum2 of the current round", registry=r
        )
        self.participants = Gauge(
            "xaynet_phase_accepted", "Messages accepted in the current round per phase", ["phase"], registry=r
        )
        self.rounds = Counter("xaynet_rounds_total", "Finished rounds by result", ["result"], registry=r)
        self.store_latency = Histogram(
            "xaynet_store_latency_seconds",
            "Latency of store operations",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_up = Gauge("xaynet_store_up", "1 when the last store operation succeeded", registry=r)
        self.model_round = Gauge(
            "xaynet_global_model_round", "Round of the latest published global model", registry=r
        )
        for phase in Phase:
            self.phase.labels(phase.value).set(0)
        # labelled children of `messages`, looked up once each (a lookup per message locks and
        # validates the labels: a tenth of a chunk's Python work)
        self._message_counters: dict[tuple[str, str, str], Counter] = {}
        self._store_latencies: dict[str, Histogram] = {}  # the same, per store operation
        self._accepted: dict[str, Gauge] = {}  # the same, of `participants`
        self._opened: dict[str, Counter] = {}  # the same, of `opened`

    def restore(self, totals: dict[str, int], current_round: dict[str, int]) -> None:
        """Re-seed the counters that must survive a restart from the store's totals.

        Called once at start: Prometheus counters only go up, so they start from the stored
        totals (earlier rounds) plus what the resumed round has accepted so far.
        """
        for result in ("completed", "failed"):
            self.rounds.labels(result).inc(totals.get(f"rounds_{result}", 0))
        for phase in (Phase.SUM, Phase.UPDATE, Phase.SUM2):
            name = f"accepted_{phase.value}"
            accepted = totals.get(name, 0) + current_round.get(name, 0)
            self.messages.labels(phase.value, "accepted", "ok").inc(accepted)

    def count_message(self, phase: str, outcome: str, reason: str) -> None:
        """One POST /message answered (the labels come from code: a small, fixed set)."""
        key = (phase, outcome, reason)
        counter = self._message_counters.get(key)
        if counter is None:
            counter = self._message_counters[key] = self.messages.labels(phase, outcome, reason)
        counter.inc()

    def count_opened(self, where: str) -> None:
        """One message body opened `where` ("event_loop" or "thread_pool")."""
        child = self._opened.get(where)
        if child is None:
            child = self._opened[where] = self.opened.labels(where)
        child.inc()

    def set_accepted(self, phase: str, accepted: int) -> None:
        """The accepted messages of the current round in `phase` (a cached labelled child)."""
        gauge = self._accepted.get(phase)
        if gauge is None:
            gauge = self._accepted[phase] = self.participants.labels(phase)
        gauge.set(accepted)

    def set_phase(self, phase: Phase) -> None:
        for each in Phase:
            self.phase.labels(each.value).set(1 if each is phase else 0)

    def observe_store(self, operation: str, seconds: float) -> None:
        histogram = self._store_latencies.get(operation)
        if histogram is None:
            histogram = self._store_latencies[operation] = self.store_latency.labels(operation)
        histogram.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
