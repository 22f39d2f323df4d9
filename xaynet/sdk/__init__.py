"""The participant SDK: the protocol state machine on asyncio, and the wheel's public API.

from xaynet.sdk import ParticipantABC, spawn_participant     # like xaynet-sdk-python
from xaynet.sdk import Participant                          # asyncio, thousands per loop
"""

from xaynet.sdk.api import (
    AsyncParticipant,
    InternalParticipant,
    ParticipantABC,
    spawn_async_participant,
    spawn_participant,
)
from xaynet.sdk.errors import (
    CoordinatorProtocolError,
    CoordinatorUnreachableError,
    GlobalModelDataTypeMisMatch,
    GlobalModelUnavailable,
    LocalModelDataTypeMisMatch,
    LocalModelLengthMisMatch,
    ParticipantError,
    ParticipantInit,
    ParticipantRestore,
)
from xaynet.sdk.flatten import flatten, unflatten
from xaynet.sdk.participant import Events, Participant, PollSchedule, State
from xaynet.sdk.tasks import Task

__all__ = [
    "AsyncParticipant",
    "CoordinatorProtocolError",
    "CoordinatorUnreachableError",
    "Events",
    "GlobalModelDataTypeMisMatch",
    "GlobalModelUnavailable",
    "InternalParticipant",
    "LocalModelDataTypeMisMatch",
    "LocalModelLengthMisMatch",
    "Participant",
    "ParticipantABC",
    "ParticipantError",
    "ParticipantInit",
    "ParticipantRestore",
    "PollSchedule",
    "State",
    "Task",
    "flatten",
    "spawn_async_participant",
    "spawn_participant",
    "unflatten",
]
