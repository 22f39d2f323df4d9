"""What a message phase is waiting for, in words a user can act on, and when to give up early.

The original ends a phase only at `max_time` when it lacks `min_count` messages (one hour in
the shipped configs), even when the lottery simply drew too few participants and nobody is
left to send. We keep its timing rule and every value of its config files, and add one
rule that depends on no setting: a phase short of its minimum after `min_time`, in which
*nobody is still working* and nothing arrived for `QUIET_SECONDS`, is a failed draw, and the
round restarts (new seed, new draw) instead of waiting out `max_time`.

"Nobody is still working" is what the coordinator can see:
* Sum: a sum participant sends its message as soon as it reads the round's `/params` (the
  wheel polls at least every 10 s), so a quiet Sum phase has no sum participant left. When
  nobody fetched `/params` in the phase, nobody is there and a new draw would change
  nothing: we wait as the original does.
* Update: every update participant must fetch `/sums` before it can build its message, and
  trains in between; while more fetches than updates were answered, someone may still be
  training, and we keep waiting (up to `max_time`, as the original).
* Sum2: only the provable case — more masks required than the round has sum participants.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from xaynet.coordinator.settings import MIN_SUM_COUNT, MIN_UPDATE_COUNT, Settings
from xaynet.coordinator.state import RoundState
from xaynet.coordinator.store.base import Phase

QUIET_SECONDS = 45.0
FETCHES_UNKNOWN = 1 << 62  # `input_fetches` after a restart in Update: the rule stays off
_UNITS = {Phase.SUM: "sum messages", Phase.UPDATE: "updates", Phase.SUM2: "masks"}


@dataclass(frozen=True)
class PhaseLimits:
    min_count: int
    max_count: int
    min_time: float
    max_time: float


def limits(settings: Settings, phase: Phase) -> PhaseLimits:
    pet, name = settings.pet, phase.value
    return PhaseLimits(
        getattr(pet, f"min_{name}_count"),
        getattr(pet, f"max_{name}_count"),
        getattr(pet, f"min_{name}_time"),
        getattr(pet, f"max_{name}_time"),
    )


def _remedy(settings: Settings, phase: Phase, sum_participants: int) -> str:
    pet = settings.pet
    if phase is Phase.SUM:
        lower = f" or a lower min_sum_count (≥ {MIN_SUM_COUNT})" if pet.min_sum_count > MIN_SUM_COUNT else ""
        return f"more participants, a higher pet.sum (now {pet.sum:g}){lower}"
    if phase is Phase.UPDATE:
        if pet.min_update_count > MIN_UPDATE_COUNT:
            return f"more participants or a lower min_update_count (≥ {MIN_UPDATE_COUNT})"
        return (
            f"more participants or a higher pet.update (now {pet.update:g}); min_update_count "
            f"cannot go below {MIN_UPDATE_COUNT} (privacy)"
        )
    return f"the sum participants' masks, or a min_sum2_count ≤ {sum_participants}"


def describe(settings: Settings, state: RoundState, now: float | None = None) -> str | None:
    """One line for `/status` and the logs, or None when the phase lacks nothing."""
    phase = state.phase
    if phase not in _UNITS:
        return None
    bounds = limits(settings, phase)
    accepted = state.accepted(phase)
    if accepted >= bounds.min_count:
        return None
    now = time.monotonic() if now is None else now
    left = max(0.0, state.phase_started + bounds.max_time - now)
    sum_participants = len(state.sum_dict or {})
    text = (
        f"{phase.value} phase: {accepted} of {bounds.min_count} required {_UNITS[phase]}, {left:,.0f} s left"
    )
    if phase is Phase.UPDATE and state.input_fetches >= FETCHES_UNKNOWN:
        text += " (resumed after a restart: who is still training is unknown)"
    elif phase is Phase.UPDATE:
        text += f" ({state.input_fetches} participants fetched the sum dictionary)"
    if phase is Phase.SUM and state.params_fetches == 0:
        text += " (no participant has fetched this round's /params yet)"
    if phase is Phase.SUM2 and bounds.min_count > sum_participants:
        return (
            f"{text}; this round has only {sum_participants} sum participants, so it cannot "
            f"complete: lower min_sum2_count to ≤ {sum_participants} or raise min_sum_count"
        )
    return f"{text}; {_remedy(settings, phase, sum_participants)}"


def failed_draw(settings: Settings, state: RoundState, now: float) -> tuple[str | None, float]:
    """(why the round cannot complete, or None; seconds after which to look again)."""
    phase = state.phase
    bounds = limits(settings, phase)
    accepted = state.accepted(phase)
    if accepted >= bounds.min_count:
        return None, QUIET_SECONDS
    if phase is Phase.SUM2:
        sum_participants = len(state.sum_dict or {})
        if bounds.min_count > sum_participants:
            return (
                f"sum2 phase: {bounds.min_count} masks are required but the round has only "
                f"{sum_participants} sum participants; a new round draws again"
            ), QUIET_SECONDS
        return None, QUIET_SECONDS
    if phase is Phase.UPDATE and state.input_fetches > accepted:
        return None, QUIET_SECONDS  # someone fetched the sum dictionary and may be training
    if phase is Phase.SUM and state.params_fetches == 0:
        return None, QUIET_SECONDS  # nobody asked for this round: a new draw would change nothing
    quiet_since = max(state.phase_started + bounds.min_time, state.last_progress)
    quiet = now - quiet_since
    if quiet < QUIET_SECONDS:
        return None, QUIET_SECONDS - quiet
    who = (
        f"no sum message arrived for {quiet:.0f} s although participants fetch this round's /params"
        if phase is Phase.SUM
        else f"every participant that fetched the sum dictionary ({state.input_fetches}) has sent its "
        f"update and nothing arrived for {quiet:.0f} s"
    )
    return (
        f"{phase.value} phase: {accepted} of {bounds.min_count} required {_UNITS[phase]}; {who}: the "
        f"lottery drew too few participants, a new round draws again. To avoid this: "
        f"{_remedy(settings, phase, 0)}"
    ), QUIET_SECONDS
