"""From POST body to a checked request: open, parse, verify, reassemble, check eligibility.

Small bodies (sum messages and the chunks of a multipart message, 3,912 bytes from a mobile
client) are opened on the event loop: their ~0.1 ms of crypto costs less than the hand-off to a
thread and back. Larger ones (updates, masks) are opened there too when one arrives alone, and
in a small thread pool when several are in progress (libsodium and OpenSSL release the GIL), so
the loop keeps serving polls and probes however many arrive at once (`ALONE_OPEN_BYTES`).
The outcome of a body is a `Verdict`; the HTTP layer turns it into a status code (see
`app.py`). A body the round key cannot open but the previous round's can is a late message of
an ended round: `rejected/round_ended` (200), not `invalid/decrypt` (400: garbage, an alarm
for operators).

Multipart: the answer is the message's, not the chunk's. Chunks are kept in the store (with
the round: Redis for a durable coordinator, so a restart or the coordinator that takes over
finds them) until the message's outcome is final; the last chunk is answered with that
outcome. A 503 keeps them, so a client that re-posts only its last chunk (the wheel, the
mobile SDK) completes the message. Chunks that are gone (evicted under the byte budget, or a
memory store that restarted) make the last chunk answer 503 `chunks_missing`: our SDK then
re-sends the whole message. Every complete message carries a digest of what was signed, so a
re-sent message that was already accepted is answered `accepted` again (not `duplicate`):
for a single message the SHA-256 of its Ed25519 signature (deterministic, and binding every
signed byte: the same message always has the same one, another message never), which spares
hashing a whole update a second time; for a multipart message the SHA-256 of its reassembled
payload (each chunk has its own signature, and a re-send may use another message id).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from xaynet.coordinator.state import RoundView
from xaynet.coordinator.store.base import Phase, Store, StoreUnavailableError
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.eligibility import is_sum_participant, is_update_participant
from xaynet.core.errors import DecryptError, XaynetError
from xaynet.core.message.assembler import ChunkAssembler, ChunkGroup, ChunkStatus
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.envelope import Message, parse_message
from xaynet.core.message.header import HEADER_LENGTH, Header, Tag
from xaynet.core.message.payloads import Payload, Sum2Payload, SumPayload, parse_payload

PHASE_OF_TAG = {Tag.SUM: Phase.SUM, Tag.UPDATE: Phase.UPDATE, Tag.SUM2: Phase.SUM2}
# The message phases of this round already over in each phase: a message of one of them may be
# the retry of a message accepted there (its first answer lost), so it is verified and looked
# up; a message of a phase still to come is refused without verifying its signature.
_ALL = frozenset({Phase.SUM, Phase.UPDATE, Phase.SUM2})
PASSED: dict[Phase, frozenset[Phase]] = {
    Phase.UPDATE: frozenset({Phase.SUM}),
    Phase.SUM2: frozenset({Phase.SUM, Phase.UPDATE}),
    Phase.UNMASK: _ALL,
    Phase.ERROR: _ALL,  # a round that failed after accepting it: it was accepted then
}
# Where a body is opened. Bodies up to INLINE_OPEN_BYTES (chunks, sum messages: ≤ ~0.3 ms of
# crypto) always on the event loop. Larger ones up to ALONE_OPEN_BYTES (an update of up to
# ~170,000 weights, ≤ ~2.5 ms) on the loop too when no other message is in progress: the hand-off
# to a thread and back cost ~12 % of a 100,000-weight update's CPU (`python -m benchmarks
# chunks --concurrency 1`). When several arrive together they go to the thread pool: opened back
# to back on the loop, a burst of 300–1,000 updates held `/healthz` for 0.3–2 s (p50 / max) and
# once let the Redis lease lapse, against ~1 ms p50 with the pool, which also opens two at once.
INLINE_OPEN_BYTES = 64 * 1024
ALONE_OPEN_BYTES = 1024 * 1024


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
    digest: bytes = b""  # what makes a re-sent message the same (see the module docstring)
    chunks: ChunkGroup | None = None  # a multipart message's chunks, released once it is final
    # A single message's other identity: the SHA-256 of its payload bytes, which is what builds
    # before the signature digest stored (a round resumed across an upgrade; a message first
    # accepted in chunks, then re-sent whole). Computed only when a stored digest differs.
    payload_digest: Callable[[], bytes] | None = None

    def same_message(self, stored: bytes | None) -> bool:
        """Whether `stored`, the digest kept with this participant's accepted message, is this
        message's: then a re-send is answered `accepted` again, not `duplicate`."""
        if stored is None or not self.digest:
            return False
        if stored == self.digest:
            return True
        return self.payload_digest is not None and stored == self.payload_digest()


# One answer for every buffered chunk: the same bytes each time (the HTTP layer keeps them
# encoded), nothing built per chunk. The last chunk is answered with the message's outcome.
BUFFERED = Verdict(
    Outcome.BUFFERED, "chunk_buffered", "chunk kept; the message is judged when its last chunk arrives"
)


ALREADY_ACCEPTED = Verdict(Outcome.ACCEPTED, "already_accepted", "this message was already accepted")


class MessageRefusedError(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.detail)
        self.verdict = verdict


def _invalid(error: XaynetError) -> MessageRefusedError:
    return MessageRefusedError(Verdict(Outcome.INVALID, error.reason, error.message))


def _rejected(reason: str, detail: str) -> MessageRefusedError:
    return MessageRefusedError(Verdict(Outcome.REJECTED, reason, detail))


def open_and_verify(body: bytes, view: RoundView) -> tuple[Message, bytes]:
    """Sealed box → header → key → signature → payload (on the loop or in a thread)."""
    record = view.record
    try:
        plain = record.keys.open(body)
    except DecryptError as error:
        if _opens_with(view.previous_keys, body):
            raise _rejected(
                "round_ended",
                "the message is sealed to the previous round's key: that round has ended (had "
                "it accepted this message, it counted if the round completed); take part in the "
                "current one (GET /params)",
            ) from None
        raise _invalid(error) from None
    try:
        header = Header.parse(plain)
        phase = PHASE_OF_TAG[header.tag]
        if phase is not record.phase and phase not in PASSED.get(record.phase, ()):
            raise _wrong_phase(header.tag, record.phase)  # not verified: it cannot be a retry
        return parse_message(plain, record.params.pk, header), plain
    except XaynetError as error:
        raise _invalid(error) from None


def _wrong_phase(tag: Tag, phase: Phase) -> MessageRefusedError:
    return _rejected("wrong_phase", f"a {tag.name.lower()} message arrived during the {phase.value} phase")


def _opens_with(keys: EncryptKeyPair | None, body: bytes) -> bool:
    """Whether `body` is a sealed box to `keys` (tried only for bodies the round key refused)."""
    if keys is None:
        return False
    try:
        keys.open(body)
    except DecryptError:
        return False
    return True


def _sha256(data: memoryview) -> bytes:
    return hashlib.sha256(data).digest()


def signature_digest(message: Message) -> bytes:
    """A single message's identity: the SHA-256 of its (deterministic) Ed25519 signature."""
    return hashlib.sha256(message.header.signature).digest()


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
        self._limits = assembler.limits  # fixed at start: built once, not per chunk
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xaynet-open")
        self.in_progress = 0  # POST /message requests between their headers and their answer

    @contextlib.contextmanager
    def receiving(self) -> Iterator[None]:
        """One POST /message in progress (the HTTP layer holds this from headers to answer)."""
        self.in_progress += 1
        try:
            yield
        finally:
            self.in_progress -= 1

    def _on_loop(self, size: int) -> bool:
        return size <= INLINE_OPEN_BYTES or (size <= ALONE_OPEN_BYTES and self.in_progress <= 1)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def prepare(
        self, body: bytes, view: RoundView, store: Store, opened: Callable[[str], None] = lambda _where: None
    ) -> Request | Verdict:
        """Everything before the phase handler; returns a request, or the verdict that ends it.

        `opened` is told where the body was opened ("event_loop" or "thread_pool")."""
        group = None
        try:
            if len(body) > INLINE_OPEN_BYTES:
                # let the other requests that are ready start (and count) first: on kept-alive
                # connections a whole burst is buffered, and each request would otherwise run
                # from headers to answer alone, every one of them opened on the loop
                await asyncio.sleep(0)
            if self._on_loop(len(body)):
                opened("event_loop")
                message, plain = open_and_verify(body, view)
            else:
                opened("thread_pool")
                loop = asyncio.get_running_loop()
                message, plain = await loop.run_in_executor(self._executor, open_and_verify, body, view)
            if PHASE_OF_TAG[message.tag] is not view.record.phase:
                return await self._out_of_phase(message, plain, view, store)
            payload = message.payload
            payload_digest = None
            if not isinstance(payload, ChunkPayload):
                digest = signature_digest(message)
                payload_digest = functools.partial(_sha256, memoryview(plain)[HEADER_LENGTH:])
            else:
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
        pk = message.participant_pk
        return Request(view, view.record.phase, pk, payload, digest, group, payload_digest)

    @staticmethod
    async def _out_of_phase(message: Message, plain: bytes, view: RoundView, store: Store) -> Verdict:
        """A message of this round outside its phase: `accepted` again if it is one that was
        accepted in its phase (a retry whose first answer was lost), else `wrong_phase`."""
        payload, pk = message.payload, message.participant_pk
        if isinstance(payload, ChunkPayload):
            group = ChunkGroup(message.tag, pk, payload.message_id)
            accepted = payload.last and await store.chunked_message_accepted(group, payload.data)
        else:
            stored = await store.accepted_digest(pk)
            accepted = stored is not None and stored in (
                signature_digest(message),
                _sha256(memoryview(plain)[HEADER_LENGTH:]),  # what builds before the signature's stored
            )
        if accepted:
            return ALREADY_ACCEPTED
        return _wrong_phase(message.tag, view.record.phase).verdict

    async def _buffer(self, store: Store, group: ChunkGroup, chunk: ChunkPayload) -> bytes | Verdict:
        put = await store.put_chunk(group, chunk, self._limits, time.time())
        match put.status:
            case ChunkStatus.COMPLETE:
                return put.payload
            case ChunkStatus.BUFFERED:
                return BUFFERED
            case ChunkStatus.DONE:
                return ALREADY_ACCEPTED
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


__all__ = ["BUFFERED", "MessagePipeline", "Outcome", "Request", "Verdict"]
