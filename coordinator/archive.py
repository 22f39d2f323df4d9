"""Every global model, archived in S3-compatible storage the original's way (`[s3]`).

Why a queue in the store: the original uploaded inside Unmask and failed the round when S3
was down. Here Unmask only *queues* the model in the store (`queue_archive`, fenced, in the
same lease as the round) and a background task uploads it; an endpoint that is down for
several rounds, or a coordinator killed meanwhile, delays uploads but loses none — the queue
is in Redis and a restarted coordinator drains it. Queueing is idempotent per object key
(a crash that redoes Unmask queues the same bytes again).

Objects are never overwritten: a conditional put (`If-None-Match: *`). A 412 means the
object already exists — after a crash between upload and dequeue it holds our bytes, which is
checked before the item is dequeued; different bytes are reported and the item stays queued.
Servers without conditional writes (older MinIO answers 501) get check-then-put instead,
with a warning that a concurrent writer could race it.

Retries: botocore retries each request a few times (standard mode); on top of that the
whole drain is retried with capped exponential backoff (tenacity) until it succeeds, and a
newly queued model wakes the uploader at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from xaynet.coordinator.settings import S3Settings
from xaynet.coordinator.store.base import ArchiveItem, Store, StoreUnavailableError
from xaynet.core.s3 import (
    ModelMetadata,
    describe_error,
    error_code,
    parse_region,
    s3_client,
    sha256_base64,
    sha256_checksum,
)

log = logging.getLogger("xaynet.coordinator.archive")
RETRY_MAX_SECONDS = 10.0  # longest wait between two attempts while S3 (or the store) is down
IDLE_POLL_SECONDS = 30.0  # with nothing queued, look at the store this often anyway
LEASE_POLL_SECONDS = 0.5  # how often to look whether this coordinator may write (again)
_EXISTS = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
_BUCKET_EXISTS = frozenset({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"})


class ArchiveError(Exception):
    """An upload did not happen; the model stays queued and is retried."""


class ArchiveConflictError(ArchiveError):
    """Another object has this model's key: skipped (the other models still go), kept queued."""


class ModelArchive:
    """The uploader: one instance per coordinator, `run()` as a background task."""

    def __init__(
        self,
        settings: S3Settings,
        store: Store,
        *,
        can_write: Callable[[], bool] = lambda: True,
        registry: CollectorRegistry | None = None,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
    ) -> None:
        self.region, self.endpoint = parse_region(settings.region)
        self.bucket = settings.buckets.global_models
        self.store = store
        self.can_write = can_write  # the store lease is ours (uploads dequeue with fenced writes)
        self.retry_max_seconds = retry_max_seconds
        self.max_queued = settings.max_queued
        self._client = s3_client(self.endpoint, self.region, settings.access_key, settings.secret_access_key)
        self._wake = asyncio.Event()
        self._bucket_ready = False
        self.conditional_put = True  # False once the server refused If-None-Match
        self.pending: int | None = None  # unknown until the first look at the store
        self.last_error: str | None = None
        self.latest: dict[str, Any] | None = None
        self._pending_gauge = Gauge(
            "xaynet_archive_pending", "Global models waiting for their S3 upload", registry=registry
        )
        self._uploads = Counter(
            "xaynet_archive_uploads", "Global models archived in S3 by result", ["result"], registry=registry
        )
        self._dropped = Counter(
            "xaynet_archive_dropped",
            "Global models dropped from the S3 queue unarchived ([s3] max_queued reached)",
            registry=registry,
        )
        self.dropped = 0
        self._uploading: str | None = None  # the queued model being uploaded right now

    # -- the producer side (Unmask) ----------------------------------------------------------
    async def enqueue(
        self,
        round_id: int,
        round_seed: bytes,
        body: bytes,
        *,
        mask_config: str,
        model_length: int,
        updates: int,
    ) -> ArchiveItem:
        """Queue a new global model durably (a fenced store write), then wake the uploader."""
        metadata = ModelMetadata(
            round_id, round_seed, sha256_checksum(body), mask_config, model_length, updates
        )
        item = ArchiveItem(metadata.key, round_id, body, metadata.to_s3())
        await self.store.queue_archive(item)
        await self._bound_queue()
        self._wake.set()
        return item

    async def _bound_queue(self) -> None:
        """Drop the oldest queued models beyond `[s3] max_queued` (S3 down for that long)."""
        # oldest first; never the one being uploaded (it would land in S3 and count as dropped)
        queued = [key for key in await self.store.archive_queue() if key != self._uploading]
        for key in queued[: max(0, len(queued) - self.max_queued)]:
            await self.store.archive_done(key)
            self.dropped += 1
            self._dropped.inc()
            log.warning(
                "S3 archive: more than [s3] max_queued = %d models waiting; dropped the oldest, %s, "
                "without archiving it (fix S3 access, or raise max_queued)",
                self.max_queued,
                key,
            )

    def status(self) -> dict[str, Any]:
        """For `/status` (the operator points `status.latestModel` at `latest`)."""
        return {
            "bucket": self.bucket,
            "endpoint": self.endpoint,
            "pending": self.pending,
            "dropped": self.dropped,
            "latest": self.latest,
            "last_error": self.last_error,
            "conditional_put": self.conditional_put,
        }

    # -- the uploader ------------------------------------------------------------------------
    async def run(self) -> None:
        """Forever: drain the queue; on failure back off (capped) and try again."""
        while True:
            if not self.can_write():  # before the round is restored, or while shutting down
                await asyncio.sleep(LEASE_POLL_SECONDS)
                continue
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(Exception),  # the uploader never dies (not on a bug either)
                wait=wait_exponential(multiplier=0.5, max=self.retry_max_seconds),
                sleep=self._nap,
                before_sleep=self._report,
            ):
                with attempt:
                    await self._drain()
            await self._nap(IDLE_POLL_SECONDS)

    async def _nap(self, seconds: float) -> None:
        """Sleep, but wake up early when a model is queued."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _report(self, retry: RetryCallState) -> None:
        failure = retry.outcome.exception() if retry.outcome is not None else None
        expected = isinstance(failure, (ArchiveError, StoreUnavailableError))
        message = str(failure) if expected else f"unexpected {type(failure).__name__}: {failure}"
        if message != self.last_error:  # one line per new problem, not one per retry
            log.warning(
                "S3 archive: %s; %s global model(s) kept in the store, retrying",
                message,
                self.pending if self.pending is not None else "the queued",
                exc_info=None if expected else failure,
            )
        self.last_error = message

    def _pointer(self, record: dict[str, Any]) -> dict[str, Any]:
        pointer = {"uri": f"s3://{self.bucket}/{record['key']}", **record}
        del pointer["key"]
        return pointer

    async def _drain(self) -> None:
        self._wake.clear()
        if not self.can_write():
            return
        if self.latest is None:  # after a restart: what the previous process uploaded last
            record = await self.store.last_archived()
            self.latest = self._pointer(record) if record else None
        keys = await self.store.archive_queue()
        self._set_pending(len(keys))
        if not keys:
            return
        await asyncio.to_thread(self._ensure_bucket)
        conflicts: list[ArchiveConflictError] = []
        for key in keys:  # one body in memory at a time, however long the queue grew
            item = await self.store.queued_model(key)
            if item is None:  # half-removed by a crash: nothing left to upload
                await self.store.archive_done(key)
                continue
            self._uploading = key
            try:
                outcome = await asyncio.to_thread(self._put, item)
            except ArchiveConflictError as conflict:
                conflicts.append(conflict)
                continue
            finally:
                self._uploading = None
            record = {
                "key": item.key,
                "round_id": item.round_id,
                "checksum": item.metadata.get("xaynet-checksum"),
                "size": len(item.body),
            }
            await self.store.archive_done(item.key, record)
            self._set_pending(self.pending - 1 if self.pending else 0)
            self._uploads.labels(outcome).inc()
            self.latest = self._pointer(record)
            log.info(
                "global model archived",
                extra={"round_id": item.round_id, "object": self.latest["uri"], "result": outcome},
            )
        if conflicts:
            raise conflicts[0]
        if self.last_error is not None:
            log.info("S3 archive: reachable again, every queued model is uploaded")
            self.last_error = None

    def _set_pending(self, count: int) -> None:
        self.pending = count
        self._pending_gauge.set(count)

    # -- blocking S3 calls (run in a worker thread) ------------------------------------------
    def _ensure_bucket(self) -> None:
        """Create the bucket once if it is missing (the original did so at start)."""
        if self._bucket_ready:
            return
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except Exception as error:  # botocore raises many types: described below
            if error_code(error) not in ("404", "NoSuchBucket", "NotFound"):
                raise ArchiveError(describe_error(error, self.endpoint)) from error
            self._create_bucket()
            log.info("S3 archive: bucket %s created", self.bucket)
        self._bucket_ready = True

    def _create_bucket(self) -> None:
        # AWS wants the region as location constraint outside us-east-1; MinIO-like servers with
        # a custom region name may refuse it: try with, then without (or the reverse).
        with_region = {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        attempts = [with_region, {}] if self.region not in (None, "us-east-1") else [{}]
        for number, extra in enumerate(attempts, 1):
            try:
                self._client.create_bucket(Bucket=self.bucket, **extra)
                return
            except Exception as error:
                code = error_code(error)
                if code in _BUCKET_EXISTS:
                    return
                if number == len(attempts) or ("Location" not in (code or "") and code != "InvalidRegion"):
                    raise ArchiveError(
                        f"cannot create bucket {self.bucket}: {describe_error(error, self.endpoint)}"
                    ) from error

    def _put(self, item: ArchiveItem) -> str:
        """Upload without overwriting: "uploaded", or "present" when our bytes are already there."""
        request: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": item.key,
            "Body": item.body,
            "Metadata": item.metadata,
            "ContentType": "application/octet-stream",
            "ChecksumSHA256": sha256_base64(item.body),  # the server verifies what it stores
        }
        if not self.conditional_put:
            existing = self._existing(item)
            if existing == item.body:
                return "present"
            if existing is not None:
                raise self._conflict(item)
        try:
            self._client.put_object(**request, **({"IfNoneMatch": "*"} if self.conditional_put else {}))
        except Exception as error:
            code = error_code(error)
            if code in _EXISTS:
                if self._existing(item) == item.body:
                    return "present"
                raise self._conflict(item) from error
            if code in ("NotImplemented", "501") and self.conditional_put:
                log.warning(
                    "S3 archive: %s does not support conditional writes (If-None-Match); checking for an "
                    "existing object before each upload instead (a concurrent writer could race it)",
                    self.endpoint,
                )
                self.conditional_put = False
                return self._put(item)
            if code == "NoSuchBucket":
                self._bucket_ready = False
            raise ArchiveError(describe_error(error, self.endpoint)) from error
        return "uploaded"

    def _conflict(self, item: ArchiveItem) -> ArchiveConflictError:
        return ArchiveConflictError(
            f"s3://{self.bucket}/{item.key} already exists with other content; not overwritten "
            "(the model stays queued: move that object away to archive ours)"
        )

    def _existing(self, item: ArchiveItem) -> bytes | None:
        """The bytes already stored under the item's key, or None."""
        try:
            existing = self._client.get_object(Bucket=self.bucket, Key=item.key)
        except Exception as error:
            if error_code(error) in ("NoSuchKey", "404"):
                return None
            raise ArchiveError(describe_error(error, self.endpoint)) from error
        return bytes(existing["Body"].read())
