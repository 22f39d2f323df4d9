"""The wheel's public API (`xaynet-sdk-python`), on our asyncio participant.

Code written for the original wheel runs unchanged: subclass `ParticipantABC`, call
`spawn_participant(url, MyParticipant, args, kwargs)`, later `stop()` to get a state to
restore from. Fixed on the way: `kwargs` reach the constructor as keyword arguments (the
wheel passed the dict's keys positionally), a constructor that raises makes
`spawn_participant` raise (the wheel's thread died silently), and every exception is
importable from `xaynet.sdk`.

Each spawned participant is a thread with its own event loop, like the wheel's. To run
thousands in one process, use `xaynet.sdk.Participant` directly on one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from xaynet.core.errors import EncodingError
from xaynet.core.message.chunks import DEFAULT_MAX_MESSAGE_SIZE
from xaynet.sdk.errors import (
    CoordinatorProtocolError,
    CoordinatorUnreachableError,
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
    ParticipantInit,
)
from xaynet.sdk.participant import Participant, PollSchedule

log = logging.getLogger("xaynet.sdk")
TrainingInput = TypeVar("TrainingInput")
TrainingResult = TypeVar("TrainingResult")
State = list[int]


class ParticipantABC(ABC, Generic[TrainingInput, TrainingResult]):
    """What a training participant implements (same methods as the wheel's class)."""

    @abstractmethod
    def train_round(self, training_input: TrainingInput | None) -> TrainingResult:
        """Train on local data; `training_input` is the deserialized global model or None."""

    @abstractmethod
    def serialize_training_result(self, training_result: TrainingResult) -> list[Any]:
        """The local model as a flat list of the round's data type."""

    @abstractmethod
    def deserialize_training_input(self, global_model: list[Any]) -> TrainingInput:
        """Turn the flat global model into what `train_round` takes."""

    def participate_in_update_task(self) -> bool:
        """Return False to skip training when selected for the update task."""
        return True

    def on_new_global_model(self, global_model: TrainingInput | None) -> None:
        """Called once per round with the latest global model (or None)."""

    def on_stop(self) -> None:
        """Called when the participant is stopped."""


def _restore_or_create(
    url: str, state: Sequence[int] | bytes | None, scalar: float, max_message_size: int | None
) -> Participant:
    schedule = PollSchedule()
    if state is None:
        return Participant(url, scalar=scalar, max_message_size=max_message_size, schedule=schedule)
    return Participant.restore(url, bytes(state), schedule=schedule)


async def _fetch_global_list(participant: Participant) -> list[Any] | None:
    try:
        model = await participant.global_model()
    except (CoordinatorUnreachableError, CoordinatorProtocolError) as error:
        raise GlobalModelUnavailable(error.message) from None
    if model is None:
        return None
    assert participant.params is not None
    try:
        return list(model.to_numpy(participant.params.mask_config.vect.data_type).tolist())
    except EncodingError as error:
        raise GlobalModelDataTypeMisMatch(error.message) from None


class _ParticipantThread(threading.Thread):
    """A daemon thread running one participant on its own event loop."""

    def __init__(self, participant: Participant) -> None:
        super().__init__(daemon=True)
        self._participant = participant
        self._loop = asyncio.new_event_loop()
        self._stop_requested = threading.Event()
        self._lock = threading.Lock()
        self._saved: bytes | None = None
        self._wake: asyncio.Event | None = None
        self.error: BaseException | None = None

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as error:  # reported through stop()/error, never swallowed silently
            self.error = error
            log.error("participant stopped: %s", error)
        finally:
            self._loop.run_until_complete(self._participant.close())
            self._loop.close()

    async def _main(self) -> None:
        participant = self._participant
        schedule = participant.schedule
        self._wake = asyncio.Event()
        failing_since: float | None = None
        while not self._stop_requested.is_set():
            try:
                progressed = await participant.tick()
                await self._after_tick()
                failing_since = None
            except (CoordinatorUnreachableError, CoordinatorProtocolError) as error:
                now = time.monotonic()
                failing_since = failing_since or now
                log.warning("coordinator not usable: %s", error.message)
                if now - failing_since >= participant.give_up_after:
                    self.error = error
                    break
                progressed = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), schedule.next_delay(progressed))
        self._saved = participant.save()

    async def _after_tick(self) -> None:
        return None

    def stop(self) -> State:
        """Stop after the running tick, and return the state to restore from."""
        self._stop_requested.set()
        if self._loop.is_running() and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        self.join(timeout=60)
        if self._saved is None:
            self._saved = self._participant.save()
        return list(self._saved)


class InternalParticipant(_ParticipantThread):
    """Drives a `ParticipantABC`: fetches each round's global model, trains when selected."""

    def __init__(self, participant: Participant, user: ParticipantABC[Any, Any]) -> None:
        super().__init__(participant)
        self.user = user
        self._global_model: Any = None
        self._fetch_failed = False

    async def _after_tick(self) -> None:
        participant = self._participant
        if participant.new_global_model or self._fetch_failed:
            try:
                flat = await _fetch_global_list(participant)
            except (GlobalModelUnavailable, GlobalModelDataTypeMisMatch) as error:
                log.warning("failed to get the global model: %s", error.message)
                self._fetch_failed = True
            else:
                self._fetch_failed = False
                self._global_model = None if flat is None else self.user.deserialize_training_input(flat)
                self.user.on_new_global_model(self._global_model)
        if participant.wants_model and not self._fetch_failed and self.user.participate_in_update_task():
            result = self.user.train_round(self._global_model)
            try:
                participant.set_model(self.user.serialize_training_result(result))
            except (LocalModelLengthMisMatch, LocalModelDataTypeMisMatch) as error:
                log.error("the trained model does not fit the round: %s", error.message)

    def stop(self) -> State:
        state = super().stop()
        self.user.on_stop()
        return state


def spawn_participant(  # noqa: PLR0917 - the wheel's positional signature
    coordinator_url: str,
    participant: type[ParticipantABC[Any, Any]],
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    state: Sequence[int] | bytes | None = None,
    scalar: float = 1.0,
    *,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
) -> InternalParticipant:
    """Start a participant thread for `participant` (a class); raise if it cannot start."""
    native = _restore_or_create(coordinator_url, state, scalar, max_message_size)
    try:
        user = participant(*args, **(kwargs or {}))
    except Exception as error:
        raise ParticipantInit(
            f"the participant class {participant.__name__} failed to initialise: {error}"
        ) from error
    thread = InternalParticipant(native, user)
    thread.start()
    return thread


class AsyncParticipant(_ParticipantThread):
    """A participant whose model the caller supplies (`set_local_model`) when it likes."""

    def __init__(self, participant: Participant, notifier: threading.Event) -> None:
        super().__init__(participant)
        self._notifier = notifier

    async def _after_tick(self) -> None:
        if self._participant.new_global_model:
            self._notifier.set()

    def get_global_model(self) -> list[Any] | None:
        self._notifier.clear()
        result: list[Any] | None = self._call(_fetch_global_list(self._participant))
        return result

    def set_local_model(self, local_model: Sequence[Any]) -> None:
        async def store() -> None:
            self._participant.set_model(local_model)

        self._call(store())

    def stop(self) -> State:
        self._notifier.clear()
        return super().stop()


def spawn_async_participant(
    coordinator_url: str,
    state: Sequence[int] | bytes | None = None,
    scalar: float = 1.0,
    *,
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
) -> tuple[AsyncParticipant, threading.Event]:
    notifier = threading.Event()
    thread = AsyncParticipant(_restore_or_create(coordinator_url, state, scalar, max_message_size), notifier)
    thread.start()
    return thread, notifier
