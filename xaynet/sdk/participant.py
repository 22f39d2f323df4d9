"""The participant's state machine on asyncio (SDK.md §1), one coroutine per participant.

Each `tick` fetches `/params`; different parameters mean a new round and reset everything.
Then the current state takes one step: pick a task, compose a message, send it (all chunks,
retrying the identical sealed bytes after a failure, as the original does), poll `/sums` or
`/seeds`. Heavy steps (masking, deriving masks) run in worker threads so thousands of
participants can share one event loop.

Differences from the original, deliberately: every request has a timeout, a coordinator that
stays unreachable (or answers garbage) ends `run` with a typed exception instead of polling
forever, the whole state can be saved and restored in any phase, and work whose phase ended
is dropped instead of finished and posted (a Sum2 derivation stops between masks).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, seal
from xaynet.core.errors import EncodingError, ModelLengthError, XaynetError
from xaynet.core.mask.model import GlobalModel
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE
from xaynet.core.message.envelope import encode_messages
from xaynet.core.message.payloads import Payload
from xaynet.sdk.bounds import check_clamping
from xaynet.sdk.client import CoordinatorClient, PostAnswer, join_url
from xaynet.sdk.errors import (
    CoordinatorProtocolError,
    CoordinatorUnreachableError,
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
    ParticipantRestore,
)
from xaynet.sdk.tasks import (
    PhaseEndedError,
    Task,
    compose_sum,
    compose_sum2,
    compose_update,
    model_array,
    select_task,
)

log = logging.getLogger("xaynet.sdk")
STATE_VERSION = 1
MAX_WHOLE_RESENDS = 3  # per message at once: after that one whole re-send per polling tick


class State(enum.StrEnum):
    AWAITING = "awaiting"
    NEW_ROUND = "new_round"
    SUM = "sum"
    UPDATE = "update"
    SUM2 = "sum2"
    SENDING = "sending"


@dataclass
class PollSchedule:
    """When to tick next: quickly after progress, then slower (×factor) up to `maximum`.

    The wheel's cadence is 0.1 s growing by ×1.2 to 10 s (SDK.md §3). `jitter` spreads each
    delay uniformly by ±that fraction: thousands of participants that started together would
    otherwise poll in lockstep bursts.
    """

    minimum: float = 0.1
    maximum: float = 10.0
    factor: float = 1.2
    jitter: float = 0.0
    _idle: int = 0

    def next_delay(self, progressed: bool) -> float:
        if progressed:
            self._idle = 0
            delay = self.minimum
        else:
            delay = min(self.maximum, self.minimum * self.factor**self._idle)
            self._idle += 1
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)  # scheduling, not secrets
        return delay


@dataclass
class Events:
    """Hooks for whoever drives the participant (all optional, all synchronous)."""

    new_round: Callable[[RoundParameters], None] = lambda _params: None
    task: Callable[[Task, RoundParameters], None] = lambda _task, _params: None
    sent: Callable[[Task, PostAnswer, int], None] = lambda _task, _answer, _size: None
    worked: Callable[[Task, float], None] = lambda _task, _seconds: None  # CPU in the SDK
    gave_up: Callable[[str], None] = lambda _reason: None
    dropped: Callable[[Task, str], None] = lambda _task, _reason: None  # work whose phase ended


@dataclass
class _Round:
    """What the participant holds for the current round (reset when `/params` changes)."""

    state: State = State.NEW_ROUND
    task: Task = Task.NONE
    ephemeral: EncryptKeyPair | None = None
    pending: list[bytes] = field(default_factory=list)  # plaintexts still to seal and send
    message: list[bytes] = field(default_factory=list)  # every plaintext of the message being sent
    resends: int = 0  # whole-message re-sends after the coordinator lost its chunks
    retry_body: bytes | None = None  # sealed bytes whose POST failed: re-sent identically
    after_sending: State = State.AWAITING


class Participant:
    def __init__(
        self,
        coordinator_url: str,
        *,
        keys: SigningKeyPair | None = None,
        scalar: float = 1.0,
        max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        session: aiohttp.ClientSession | None = None,
        events: Events | None = None,
        model_provider: Callable[[RoundParameters], Any] | None = None,
        schedule: PollSchedule | None = None,
        give_up_after: float = 120.0,
        request_timeout: float = 30.0,
        phase_ended: Callable[[str, bytes], bool] | None = None,
        gate: asyncio.Semaphore | None = None,
        watch_interval: float = 1.0,
        client: CoordinatorClient | None = None,
        sum2_gate: asyncio.Semaphore | None = None,
    ) -> None:
        """`phase_ended(phase, round_seed)` says whether the coordinator has left that phase
        ("update", "sum2") of that round; without it the participant asks `/params` whether
        the round changed, every `watch_interval` seconds of long work and before posting.
        `gate`, shared by participants on one loop, bounds how many compose and send an update
        at once (each holds its model and message meanwhile: memory, and the coordinator's
        multipart buffer). `client` replaces the participant's own HTTP client (one that
        shares fetches between participants of one process, for instance). `sum2_gate` bounds
        concurrent Sum2 derivations on one loop: they are CPU-bound, so one after another the
        first finishes (and may end the phase) as early as possible and the rest are dropped."""
        self.url = coordinator_url
        self.keys = keys or SigningKeyPair.generate()
        self.scalar = scalar
        self.max_message_size = max_message_size
        self.events = events or Events()
        self.model_provider = model_provider
        self.schedule = schedule or PollSchedule()
        self.give_up_after = give_up_after
        self.phase_ended = phase_ended
        self.gate = gate
        self.sum2_gate = sum2_gate
        self.watch_interval = watch_interval
        self._own_session = session is None
        self._session = session
        self._request_timeout = request_timeout
        self._client: CoordinatorClient | None = client
        self._given_client = client
        self.params: RoundParameters | None = None
        self._params_bytes = b""
        self.round = _Round(state=State.AWAITING)
        self._local_model: Any = None
        self.wants_model = False
        self.new_global_model = False
        self.clamping_warned = False  # the bound-clamping warning is given once per participant
        join_url(coordinator_url, "params")  # a bad URL fails here, at construction

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def client(self) -> CoordinatorClient:
        if self._client is None:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._client = CoordinatorClient(self.url, self._session, timeout=self._request_timeout)
        return self._client

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None
        self._client = self._given_client

    @property
    def task(self) -> Task:
        return self.round.task

    @property
    def state(self) -> State:
        return self.round.state

    def set_model(self, weights: Any) -> None:
        """Provide the local model for the next update task (one slot, like the wheel)."""
        if self.params is None:
            raise LocalModelLengthMisMatch("no round is known yet: the model length is not known")
        try:
            self._local_model = model_array(weights, self.params)
        except ModelLengthError as error:
            raise LocalModelLengthMisMatch(error.message) from None
        except EncodingError as error:
            raise LocalModelDataTypeMisMatch(error.message) from None
        self.wants_model = False

    async def global_model(self) -> GlobalModel | None:
        model = await self.client.model()
        self.new_global_model = False
        return model

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Tick until `stop` is set; raise if the coordinator stays unreachable or garbled."""
        stop = stop or asyncio.Event()
        failing_since: float | None = None
        try:
            while not stop.is_set():
                try:
                    progressed = await self.tick()
                    failing_since = None
                except (CoordinatorUnreachableError, CoordinatorProtocolError) as error:
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since >= self.give_up_after:
                        self.events.gave_up(error.message)
                        raise
                    progressed = False
                delay = self.schedule.next_delay(progressed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            await self.close()

    # -- one transition ------------------------------------------------------------------
    async def tick(self) -> bool:
        params, raw = await self.client.params()
        if raw != self._params_bytes:
            self._params_bytes = raw
            self.params = params
            self.round = _Round()
            self.new_global_model = True
            self.events.new_round(params)
            return True
        return await self._step(params)

    async def _step(self, params: RoundParameters) -> bool:
        current = self.round
        match current.state:
            case State.AWAITING:
                return False
            case State.NEW_ROUND:
                current.task = select_task(self.keys, params)
                self.events.task(current.task, params)
                if current.task is Task.SUM:
                    current.ephemeral = EncryptKeyPair.generate()
                    current.state = State.SUM
                elif current.task is Task.UPDATE:
                    current.state = State.UPDATE
                    self.wants_model = self._local_model is None
                else:
                    current.state = State.AWAITING
                return True
            case State.SUM:
                assert current.ephemeral is not None
                self._queue(params, compose_sum(self.keys, params, current.ephemeral), State.SUM2)
                return True
            case State.UPDATE:
                return await self._update(params)
            case State.SUM2:
                return await self._sum2(params)
            case State.SENDING:
                return await self._send(params)

    def _timed(self, compose: Callable[[], Payload]) -> Payload:
        started = time.perf_counter()
        try:
            return compose()
        finally:
            self.events.worked(self.round.task, time.perf_counter() - started)

    def _queue(self, params: RoundParameters, payload: Payload, after: State) -> None:
        started = time.perf_counter()
        self.round.pending = encode_messages(self.keys, params.pk, payload, self.max_message_size)
        self.round.message = list(self.round.pending)
        self.round.resends = 0
        self.events.worked(self.round.task, time.perf_counter() - started)
        self.round.after_sending = after
        self.round.state = State.SENDING

    async def _update(self, params: RoundParameters) -> bool:
        sums = await self.client.sums()
        if sums is None:
            return False
        if self.gate is None:
            return await self._compose_update(params, sums)
        async with self.gate:  # the model, masked message and its chunks live inside the slot
            if await self._ended(params, "update"):
                return self._drop("update ended while waiting to compose")
            progressed = await self._compose_update(params, sums)
            if self.round.state is State.SENDING:
                await self._send(params)
            return progressed

    async def _compose_update(self, params: RoundParameters, sums: dict[bytes, bytes]) -> bool:
        model = self._local_model
        if model is None and self.model_provider is not None:
            model = self.model_provider(params)
        if model is None:
            self.wants_model = True
            return False
        self._local_model = None
        self._warn_if_clamped(params, model)
        compose = functools.partial(compose_update, self.keys, params, sums, model, scalar=self.scalar)
        return await self._compose_and_queue(
            params, lambda _stop: compose(), "update", "the local model does not fit this round"
        )

    def _warn_if_clamped(self, params: RoundParameters, model: Any) -> None:
        """Say once when the round's bound clamps the model (times the scalar) or the scalar:
        the original masks it silently and the global model comes out bent."""
        if self.clamping_warned:
            return
        try:
            clamping = check_clamping(model, self.scalar, params.mask_config)
        except XaynetError:
            return  # not a model of this round at all: composing reports that
        if clamping is not None:
            self.clamping_warned = True
            log.warning("%s (warned once per participant)", clamping.message())

    async def _sum2(self, params: RoundParameters) -> bool:
        seeds = await self.client.seeds(self.keys.public)
        if seeds is None:
            return False
        assert self.round.ephemeral is not None
        ephemeral = self.round.ephemeral

        def compose(stop: threading.Event) -> Payload:
            return compose_sum2(self.keys, params, ephemeral, seeds, stop=stop)

        failure = "giving up this round's sum2 task"
        if self.sum2_gate is None:
            return await self._compose_and_queue(params, compose, "sum2", failure)
        async with self.sum2_gate:
            if await self._ended(params, "sum2"):
                return self._drop("sum2 ended while waiting to derive")
            return await self._compose_and_queue(params, compose, "sum2", failure)

    async def _compose_and_queue(
        self,
        params: RoundParameters,
        compose: Callable[[threading.Event], Payload],
        phase: str,
        failure: str,
    ) -> bool:
        """Compose in a worker thread (the heavy part), watching the phase meanwhile: once it
        ended, `stop` makes the work end early and nothing is posted. A payload that cannot be
        built ends the task for this round, as in the original."""
        stop = threading.Event()
        work = asyncio.ensure_future(asyncio.to_thread(self._timed, functools.partial(compose, stop)))
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=self.watch_interval)
                if not work.done() and await self._ended(params, phase):
                    stop.set()
            payload = work.result()
        except PhaseEndedError as ended:
            return self._drop(str(ended))
        except XaynetError as error:
            log.warning("%s: %s", failure, error.message)
            self.round.state = State.AWAITING
            return True
        finally:
            stop.set()  # cancelled (the participant stops): the thread stops at its next mask
            if not work.done():  # its PhaseEndedError then is expected: retrieved, never logged
                work.add_done_callback(lambda done: done.cancelled() or done.exception())
        if await self._ended(params, phase):
            return self._drop(f"{phase} ended while composing")
        self._queue(params, payload, State.AWAITING)
        return True

    async def _ended(self, params: RoundParameters, phase: str) -> bool:
        """Whether the coordinator has left `phase` of this round (see `phase_ended`)."""
        if self.phase_ended is not None:
            return self.phase_ended(phase, params.seed)
        try:
            _, raw = await self.client.params()
        except (CoordinatorUnreachableError, CoordinatorProtocolError):
            return False  # unknown: finish the work; the next tick handles the coordinator
        return raw != self._params_bytes

    def _drop(self, reason: str) -> bool:
        log.info("dropped this round's %s work: %s", self.round.task.name.lower(), reason)
        self.events.dropped(self.round.task, reason)
        self.round.state = State.AWAITING
        self._local_model = None
        return True

    async def _send(self, params: RoundParameters) -> bool:
        current = self.round
        progressed = False
        while current.retry_body is not None or current.pending:
            body = current.retry_body
            if body is None:
                started = time.perf_counter()
                body = seal(params.pk, current.pending.pop(0))
                self.events.worked(current.task, time.perf_counter() - started)
            current.retry_body = body
            try:
                answer = await self.client.post_message(body)
            except CoordinatorUnreachableError:
                if progressed:
                    return True
                raise
            current.retry_body = None
            progressed = True
            self.events.sent(current.task, answer, len(body))
            if answer.reason == "chunks_missing":
                # The last chunk's answer is not final: the coordinator no longer holds the
                # earlier chunks (evicted under its byte budget, or lost with its memory).
                # The wheel would re-post only this chunk forever; we send the whole message,
                # at once a few times, then once per (backed-off) tick until an answer is
                # final or the round changes: never is the message taken as sent.
                current.resends += 1
                current.pending = list(current.message)
                if current.resends <= MAX_WHOLE_RESENDS:
                    log.info("the coordinator lost chunks of our message: sending all of it again")
                    continue
                if current.resends == MAX_WHOLE_RESENDS + 1:
                    log.warning(
                        "the coordinator keeps losing chunks of our message (its multipart buffer "
                        "is under pressure): re-sending it at the polling interval"
                    )
                return False
            if answer.status == 400:
                # A message of an earlier round that the coordinator cannot place ("decrypt":
                # two rounds old, or the coordinator restarted since): expected, and the next
                # tick starts the new round.
                level = logging.INFO if answer.reason == "decrypt" else logging.WARNING
                log.log(level, "the coordinator refused our message as invalid: %s", answer.reason)
                current.pending = []
                break
            if answer.result in ("rejected", "discarded") and current.pending:
                # A final answer before the last chunk (the phase or the round ended meanwhile):
                # the rest of the message would be refused the same way.
                log.info("the coordinator refused our message (%s): not sending the rest", answer.reason)
                current.pending = []
                break
        current.state = current.after_sending
        current.message = []  # answered: no re-send will need it (it is as large as the model)
        return True

    # -- save / restore ------------------------------------------------------------------
    def save(self) -> bytes:
        """Everything needed to resume, including secret keys: store it like a secret."""
        current = self.round
        data = {
            "version": STATE_VERSION,
            "signing_seed": self.keys.seed.hex(),
            "scalar": self.scalar,
            "max_message_size": self.max_message_size,
            "params": self._params_bytes.hex(),
            "state": current.state.value,
            "task": int(current.task),
            "ephemeral_secret": current.ephemeral.secret.hex() if current.ephemeral else None,
            "pending": [m.hex() for m in current.pending],
            "message": [m.hex() for m in current.message],
            "retry_body": current.retry_body.hex() if current.retry_body else None,
            "after_sending": current.after_sending.value,
        }
        return json.dumps(data).encode()

    @classmethod
    def restore(cls, coordinator_url: str, saved: bytes, **options: Any) -> Participant:
        try:
            data = json.loads(saved)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {data.get('version')}")
            participant = cls(
                coordinator_url,
                keys=SigningKeyPair.from_seed(bytes.fromhex(data["signing_seed"])),
                scalar=float(data["scalar"]),
                max_message_size=data["max_message_size"],
                **options,
            )
            params_bytes = bytes.fromhex(data["params"])
            if params_bytes:
                participant.params = RoundParameters.from_bincode(params_bytes)
                participant._params_bytes = params_bytes
            secret = data["ephemeral_secret"]
            participant.round = _Round(
                state=State(data["state"]),
                task=Task(data["task"]),
                ephemeral=EncryptKeyPair.from_secret(bytes.fromhex(secret)) if secret else None,
                pending=[bytes.fromhex(m) for m in data["pending"]],
                message=[bytes.fromhex(m) for m in data.get("message", [])],
                retry_body=bytes.fromhex(data["retry_body"]) if data["retry_body"] else None,
                after_sending=State(data["after_sending"]),
            )
        except (ValueError, KeyError, TypeError, XaynetError) as error:
            raise ParticipantRestore(f"the saved participant state cannot be restored: {error}") from None
        return participant
