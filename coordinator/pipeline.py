"""From POST body to a checked request: open, parse, verify, reassemble, check eligibility.

The cryptographic work runs in a small thread pool (libsodium releases the GIL), so the
event loop keeps serving `/params` polls while large updates are opened. The outcome of a
body is a `Verdict`; the HTTP layer turns it into a status code (see `app.py`).

Multipart: the answer is the message's, not the chunk's. Chunks are kept in the store (with
the round: Redis for a durable coordinator, so a restart or the coordinator that takes over
finds them) until the message's outcome is final; the last chunk is answered with that
outcome. A 503 keeps them, so a client that re-posts only its last chunk (the wheel, the
mobile SDK) completes the message. Chunks that are gone (evicted under the byte budget, or a
memory store that restarted) make the last chunk answer 503 `chunks_missing`: our SDK then
re-sends the whole message. Every complete message carries the SHA-256 of its payload, so a
re-sent message that was already accepted is answered `accepted` again (not `duplicate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from xaynet.coordinator.state import MESSAGE_PHASES, RoundView
from xaynet.coordinator.store.base import Phase, Store, StoreUnavailableError
from xaynet.core.eligibility import is_sum_participant, is_update_participant
from xaynet.core.errors import XaynetError
from xaynet.core.message.assembler import ChunkAssembler, ChunkGroup, ChunkStatus
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.envelope import Message, parse_message
from xaynet.core.message.header import HEADER_LENGTH, Header, Tag
from xaynet.core.message.payloads import Payload, Sum2Payload, SumPayload, parse_payload

PHASE_OF_TAG = {Tag.SUM: Phase.SUM, Tag.UPDATE: Phase.UPDATE, Tag.SUM2: Phase.SUM2}


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # a genuine message of this round that the round's rules refuse
    DISCARDED = "discarded"  # the phase already has max_count messages
    BUFFERED = "buffered"  # one chunk of a multipart message, kept until it is complete
    INVALID = "invalid"  # not a message of this round at all (cannot be opened, parsed, verified)
    UNAVAILABLE = "unavailable"  # the store failed; nothing changed, retry later


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Request:
    """A verified, complete, eligible message, ready for its phase's handler."""

    view: RoundView
    phase: Phase
    participant_pk: bytes
    payload: Payload
    digest: bytes = b""  # SHA-256 of the payload bytes: what makes a re-sent message the same
    chunks: ChunkGroup | None = None  # a multipart message's chunks, released once it is final


class MessageRefusedError(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.detail)
        self.verdict = verdict


def _invalid(error: XaynetError) -> MessageRefusedError:
    return MessageRefusedError(Verdict(Outcome.INVALID, error.reason, error.message))


def _rejected(reason: str, detail: str) -> MessageRefusedError:
    return MessageRefusedError(Verdict(Outcome.REJECTED, reason, detail))


def open_and_verify(body: bytes, view: RoundView) -> tuple[Message, bytes]:
    """Runs in a worker thread: sealed box → header → phase → key → signature → payload.

    Returns the message and the SHA-256 of its payload bytes (a chunk's: of the chunk)."""
    record = view.record
    try:
        plain = record.keys.open(body)
        header = Header.parse(plain)
    except XaynetError as error:
        raise _invalid(error) from None
    expected = PHASE_OF_TAG[header.tag]
    if record.phase is not expected:
        raise _rejected(
            "wrong_phase",
            f"a {header.tag.name.lower()} message arrived during the {record.phase.value} phase",
        )
    try:
        return parse_message(plain, record.params.pk), hashlib.sha256(plain[HEADER_LENGTH:]).digest()
    except XaynetError as error:
        raise _invalid(error) from None


def check_eligibility(message_pk: bytes, payload: Payload, view: RoundView) -> None:
    params = view.record.params
    if isinstance(payload, SumPayload | Sum2Payload):
        if not is_sum_participant(message_pk, payload.sum_signature, params.seed, params.sum):
            raise _rejected(
                "not_sum_eligible", "the sender's sum ticket does not win this round's sum lottery"
            )
        return
    if not is_update_participant(
        message_pk,
        sum_signature=payload.sum_signature,
        update_signature=payload.update_signature,
        round_seed=params.seed,
        sum_prob=params.sum,
        update_prob=params.update,
    ):
        raise _rejected(
            "not_update_eligible", "the sender is a sum participant or not selected for the update task"
        )


class MessagePipeline:
    def __init__(self, assembler: ChunkAssembler, workers: int = 2) -> None:
        self.assembler = assembler  # the limits of the multipart buffer (the chunks are in the store)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xaynet-open")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def prepare(self, body: bytes, view: RoundView, store: Store) -> Request | Verdict:
        """Everything before the phase handler; returns a request, or the verdict that ends it."""
        if view.record.phase not in MESSAGE_PHASES:
            if len(body) < HEADER_LENGTH:
                return Verdict(Outcome.INVALID, "bad_length", "the body is too short to be a message")
            return Verdict(
                Outcome.REJECTED,
                "wrong_phase",
                f"no messages are taken during the {view.record.phase.value} phase",
            )
        loop = asyncio.get_running_loop()
        group = None
        try:
            message, digest = await loop.run_in_executor(self._executor, open_and_verify, body, view)
            payload = message.payload
            if isinstance(payload, ChunkPayload):
                group = ChunkGroup(message.tag, message.participant_pk, payload.message_id)
                assembled = await self._buffer(store, group, payload)
                if isinstance(assembled, Verdict):
                    return assembled
                digest = hashlib.sha256(assembled).digest()
                try:
                    payload = parse_payload(message.tag, assembled)
                except XaynetError as error:
                    raise _invalid(error) from None
            check_eligibility(message.participant_pk, payload, view)
        except MessageRefusedError as rejection:
            if group is not None:  # a complete message with a final outcome: its chunks go
                await self.release(store, group, accepted=False)
            return rejection.verdict
        except StoreUnavailableError as error:
            return Verdict(Outcome.UNAVAILABLE, "store_unavailable", str(error))
        return Request(view, view.record.phase, message.participant_pk, payload, digest, group)

    async def _buffer(self, store: Store, group: ChunkGroup, chunk: ChunkPayload) -> bytes | Verdict:
        put = await store.put_chunk(group, chunk, self.assembler.limits, time.time())
        match put.status:
            case ChunkStatus.COMPLETE:
                return put.payload
            case ChunkStatus.BUFFERED:
                return Verdict(
                    Outcome.BUFFERED,
                    "chunk_buffered",
                    f"chunk {chunk.chunk_id} of message {chunk.message_id} buffered",
                )
            case ChunkStatus.DONE:
                return Verdict(Outcome.ACCEPTED, "already_accepted", "this message was already accepted")
            case ChunkStatus.MISSING:
                return Verdict(
                    Outcome.UNAVAILABLE,
                    "chunks_missing",
                    f"{put.detail} (evicted or lost): send the whole message again",
                )
            case ChunkStatus.FULL:
                return Verdict(Outcome.UNAVAILABLE, "multipart_capacity", put.detail)
            case _:
                return Verdict(Outcome.INVALID, "multipart", put.detail)

    @staticmethod
    async def release(store: Store, group: ChunkGroup, accepted: bool) -> None:
        """The message's outcome is final: drop its chunks (best effort: they go with the round)."""
        with contextlib.suppress(StoreUnavailableError):
            await store.release_chunks(group, accepted)

    def reset(self) -> None:
        """Nothing to do: chunks live in the store and are cleared with the round's data."""


__all__ = ["MessagePipeline", "Outcome", "Request", "Verdict"]
