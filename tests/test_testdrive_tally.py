"""How test-drive accounts for its participants' answers, driven through the SDK's event hooks
exactly as a participant calls them (no coordinator: the order of events is what is tested).

A sum participant sends two messages, sum then sum2, under one task; the answers must be
counted under the message they answer."""

from __future__ import annotations

import os

from xaynet.core.bincode import RoundParameters
from xaynet.core.mask.config import DEFAULT_CONFIG, MaskConfigPair
from xaynet.sdk.client import PostAnswer
from xaynet.sdk.participant import Participant
from xaynet.sdk.tasks import Task
from xaynet.testdrive.group import GroupSettings, ParticipantGroup
from xaynet.testdrive.workloads import RandomVectors


def _params() -> RoundParameters:
    return RoundParameters(os.urandom(32), 0.5, 0.5, os.urandom(32), MaskConfigPair.same(DEFAULT_CONFIG), 4)


def _one_participant() -> tuple[ParticipantGroup, Participant]:
    group = ParticipantGroup(range(1), "http://127.0.0.1:9", GroupSettings(None, 60.0), RandomVectors())
    return group, group._participant(0, gate=None)  # type: ignore[arg-type]  # no sending here


def test_a_sum_participant_s_two_answers_are_counted_under_sum_and_sum2() -> None:
    group, participant = _one_participant()
    events, params = participant.events, _params()
    events.new_round(params)
    events.task(Task.SUM, params)
    events.sent(Task.SUM, PostAnswer(200, "accepted", ""), 100)  # the sum message
    events.sent(Task.SUM, PostAnswer(200, "buffered", "chunk_buffered"), 4000)  # a sum2 chunk
    events.sent(Task.SUM, PostAnswer(200, "rejected", "phase_ended"), 4000)  # its last chunk
    tally = group.tally(params.seed)
    assert tally.selected["sum"] == 1
    assert tally.refused == {"sum2": {"rejected/phase_ended": 1}}


def test_a_refused_sum_message_is_counted_under_sum_and_the_next_round_starts_afresh() -> None:
    group, participant = _one_participant()
    events = participant.events
    first, second = _params(), _params()
    events.new_round(first)
    events.task(Task.SUM, first)
    events.sent(Task.SUM, PostAnswer(503, "unavailable", "store_unavailable"), 100)  # not final
    events.sent(Task.SUM, PostAnswer(200, "rejected", "wrong_phase"), 100)
    events.new_round(second)
    events.task(Task.SUM, second)
    events.sent(Task.SUM, PostAnswer(200, "discarded", "phase_full"), 100)
    assert group.tally(first.seed).refused == {"sum": {"rejected/wrong_phase": 1}}
    assert group.tally(second.seed).refused == {"sum": {"discarded/phase_full": 1}}


def test_an_updater_s_refusal_is_counted_under_update() -> None:
    group, participant = _one_participant()
    events, params = participant.events, _params()
    events.new_round(params)
    events.task(Task.UPDATE, params)
    events.sent(Task.UPDATE, PostAnswer(200, "discarded", "phase_full"), 100)
    assert group.tally(params.seed).refused == {"update": {"discarded/phase_full": 1}}
