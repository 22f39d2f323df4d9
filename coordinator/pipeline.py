"""From POST body to a checked request: open, parse, verify, reassemble, check eligibility.

The cryptographic work runs in a small thread pool (libsodium releases the GIL), so the
event loop keeps serving `/params` polls while large updates are opened. The outcome of a
body is a `Verdict`; the HTTP layer turns it into a status code (see `app.py`).
"""

from __future__ import annotations

import asyncio
import enum
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from xaynet.coordinator.state import MESSAGE_PHASES, RoundView
from xaynet.coordinator.store.base import Phase
from xaynet.core.eligibility import is_sum_participant, is_update_participant
from xaynet.core.errors import MultipartError, XaynetError
from xaynet.core.message.assembler import ChunkAssembler
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


class MessageRefusedError(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.detail)
        self.verdict = verdict


def _invalid(error: XaynetError) -> MessageRefusedError:
    return MessageRefusedError(Verdict(Outcome.INVALID, error.reason, error.message))


def _rejected(reason: str, detail: str) -> MessageRefusedError:
    return MessageRefusedError(Verdict(Outcome.REJECTED, reason, detail))


def open_and_verify(body: bytes, view: RoundView) -> Message:
    """Runs in a worker thread: sealed box → header → phase → key → signature → payload."""
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
        return parse_message(plain, record.params.pk)
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
        self.assembler = assembler
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xaynet-open")
        self._assembler_epoch = -1
        self._last_expiry = 0.0

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def prepare(self, body: bytes, view: RoundView) -> Request | Verdict:
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
        try:
            message = await loop.run_in_executor(self._executor, open_and_verify, body, view)
            payload = message.payload
            if isinstance(payload, ChunkPayload):
                assembled = self._buffer(message, payload, view)
                if assembled is None:
                    return Verdict(
                        Outcome.BUFFERED,
                        "chunk_buffered",
                        f"chunk {payload.chunk_id} of message {payload.message_id} buffered",
                    )
                payload = assembled
            check_eligibility(message.participant_pk, payload, view)
        except MessageRefusedError as rejection:
            return rejection.verdict
        return Request(view, view.record.phase, message.participant_pk, payload)

    def _buffer(self, message: Message, chunk: ChunkPayload, view: RoundView) -> Payload | None:
        if self._assembler_epoch != view.epoch:
            self.assembler.clear()  # partial messages never outlive their phase
            self._assembler_epoch = view.epoch
        now = time.monotonic()
        if now - self._last_expiry > 1.0:
            self.assembler.expire(now)
            self._last_expiry = now
        try:
            done = self.assembler.add(
                message.participant_pk, message.header.coordinator_pk, message.tag, chunk, now
            )
        except MultipartError as error:
            raise _invalid(error) from None
        if done is None:
            return None
        try:
            return parse_payload(done.tag, done.payload)
        except XaynetError as error:
            raise _invalid(error) from None

    def reset(self) -> None:
        self.assembler.clear()


__all__ = ["MessagePipeline", "Outcome", "Request", "Verdict"]
