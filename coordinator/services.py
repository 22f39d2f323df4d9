"""The parts a phase works with, bundled so stage functions take one argument."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from xaynet.coordinator.archive import ModelArchive
from xaynet.coordinator.metrics import CoordinatorMetrics
from xaynet.coordinator.model_export import ModelExporter
from xaynet.coordinator.pipeline import MessagePipeline
from xaynet.coordinator.settings import Settings
from xaynet.coordinator.state import RoundState
from xaynet.coordinator.store.base import RoundRecord, Store
from xaynet.coordinator.store.lease import LeaseKeeper

log = logging.getLogger("xaynet.coordinator")


@dataclass
class Services:
    settings: Settings
    store: Store
    state: RoundState
    metrics: CoordinatorMetrics
    pipeline: MessagePipeline
    exporter: ModelExporter | None = None
    archive: ModelArchive | None = None  # the S3 uploader, with [s3] (coordinator/archive.py)
    fold_every: int = 16
    # the round's lease: only its holder writes to the store (store/lease.py); None = not yet
    lease: LeaseKeeper | None = None
    # lifecycle (written by `service.py` only): serving the round, and shutting down
    started: bool = False
    stopping: bool = False
    waiting_for_store: str | None = None

    @property
    def finished(self) -> bool:
        """`[pet] max_rounds` global models exist: no new round, no more messages."""
        limit = self.settings.pet.max_rounds
        return limit > 0 and self.state.rounds_completed >= limit

    def apply_totals(self, totals: dict[str, int]) -> None:
        """Take the stored totals as the truth (at start and after each round's end)."""
        self.state.rounds_completed = totals.get("rounds_completed", 0)
        self.state.rounds_failed = totals.get("rounds_failed", 0)

    @property
    def keeps_models(self) -> bool:
        """Whether accepted masked models are logged for restart (only a durable store)."""
        return self.store.kind != "memory"

    async def enter(self, record: RoundRecord, persist: bool = True) -> None:
        """Store the new phase durably, then switch to it (call with the state lock held)."""
        previous = self.state.phase
        elapsed = self.state.phase_started
        if persist:
            await self.store.save_round(record)
        self.metrics.phase_duration.labels(previous.value).observe(time.monotonic() - elapsed)
        self.state.enter(record)
        self.metrics.set_phase(record.phase)
        self.metrics.round_id.set(record.round_id)
        log.info(
            "phase %s", record.phase.value, extra={"round_id": record.round_id, "phase": record.phase.value}
        )
