"""Exceptions of the participant SDK, exported from `xaynet.sdk` (the wheel hid its own).

The names of the original wheel's exceptions are kept so code written for it reads the same.
"""

from __future__ import annotations

from xaynet.core.errors import XaynetError


class ParticipantError(XaynetError):
    """Base of the SDK's errors."""


class CoordinatorUnreachableError(ParticipantError):
    """The coordinator did not answer (connection refused, timeouts) for too long."""

    reason = "coordinator_unreachable"


class CoordinatorProtocolError(ParticipantError):
    """The coordinator answered, but not with what the protocol defines (garbage bodies)."""

    reason = "coordinator_protocol"


class ParticipantInit(ParticipantError):  # noqa: N818 - the wheel's name
    """The participant cannot be created (bad URL, bad arguments, constructor failed)."""


class ParticipantRestore(ParticipantError):  # noqa: N818 - the wheel's name
    """A saved state that cannot be restored."""


class LocalModelLengthMisMatch(ParticipantError):  # noqa: N818 - the wheel's name
    """The local model's length differs from the round's model length."""


class LocalModelDataTypeMisMatch(ParticipantError):  # noqa: N818 - the wheel's name
    """The local model's values do not fit the round's data type."""


class GlobalModelUnavailable(ParticipantError):  # noqa: N818 - the wheel's name
    """The global model could not be fetched or decoded."""


class GlobalModelDataTypeMisMatch(ParticipantError):  # noqa: N818 - the wheel's name
    """A global model weight does not fit the round's data type."""
