"""A store write that happened but whose reply was lost must not corrupt the global model.

Real redis-server behind a proxy that loses one reply, a real `xaynet coordinator`. Redis runs
the update script (the update is stored: its seeds will be in `/seeds`), the coordinator sees
a connection error and answers 503. If the phase ends before that client retries, the
aggregate must still include the stored update, or unmasking publishes garbage.
"""

from __future__ import annotations

import base64
import urllib.parse
from pathlib import Path

import pytest

from tests import models
from tests.coordinator.hand_round import HEAD, HandRound
from tests.pet_client import ephemeral, keys_for
from tests.processes import coordinator_process, free_port, http_post, pet_config, redis_server
from tests.redis_proxy import reply_dropper
from xaynet.core.bincode import decode_seed_dict, decode_sum_dict
from xaynet.core.crypto import SigningKeyPair
from xaynet.core.message.envelope import seal_messages
from xaynet.core.message.payloads import Payload
from xaynet.sdk.tasks import Task, compose_sum, compose_sum2, compose_update

TOTAL = 4


@pytest.mark.parametrize("store_fails_at_phase_end", [False, True])
def test_an_update_stored_but_answered_503_is_in_the_global_model(
    tmp_path: Path, store_fails_at_phase_end: bool
) -> None:
    """With `store_fails_at_phase_end`, the store also fails when the Update phase ends (the
    reply to the count of stored updates is lost): the round waits for the store, finds it
    holds one update more than memory, and goes on with it instead of failing the round."""
    with redis_server(tmp_path) as redis, reply_dropper(redis.port) as proxy:
        port = free_port()
        config = pet_config(
            HEAD + TOTAL,
            port=port,
            redis_url=proxy.url,
            sum_prob=0.5,
            min_update_count=3,
            times=(0, 0, 0),
            max_time=120,
        )
        with coordinator_process(tmp_path, config, port) as coordinator:
            round_ = HandRound([coordinator.url], updaters=0, total=TOTAL)
            params = round_.wait_phase("sum")
            summer, summer_ephemeral = keys_for(params, Task.SUM), ephemeral()
            assert (
                round_.send(summer, params, compose_sum(summer, params, summer_ephemeral)).result
                == "accepted"
            )
            params = round_.wait_phase("update")
            sums = decode_sum_dict(round_._get("/sums")[1])

            def update(index: int) -> tuple[SigningKeyPair, Payload]:
                keys = keys_for(params, Task.UPDATE)
                return keys, compose_update(keys, params, sums, models.local_model(index, HEAD, TOTAL))

            for index in (0, 1):
                keys, payload = update(index)
                assert round_.send(keys, params, payload).result == "accepted"
            # Update 2: every chunk but the last as usual; the last one's store reply is lost.
            keys, payload = update(2)
            bodies = seal_messages(keys, params.pk, payload, round_.max_message_size)
            for body in bodies[:-1]:
                assert http_post(coordinator.url + "/message", body)[0] == 200
            proxy.arm(b"staging:", replies=2)  # SET staging + EVALSHA, one pipeline
            code, headers, _ = http_post(coordinator.url + "/message", bodies[-1])
            assert proxy.cut == 1, "the proxy lost the reply of the update script"
            assert (code, headers.get("X-Xaynet-Reason")) == (503, "store_unavailable")
            # That client is slow to retry: update 3 ends the phase (min_update_count = 3).
            if store_fails_at_phase_end:
                proxy.arm(b"SCARD")  # the phase end's first question to the store
            keys, payload = update(3)
            assert round_.send(keys, params, payload).result == "accepted"
            params = round_.wait_phase("sum2")
            query = urllib.parse.urlencode({"pk": base64.b64encode(summer.public).decode()})
            seeds = decode_seed_dict(round_._get(f"/seeds?{query}")[1])
            assert len(seeds) == 4, "the stored update's seed is published"
            sum2 = compose_sum2(summer, params, summer_ephemeral, seeds)
            assert round_.send(summer, params, sum2).result == "accepted"
            status = coordinator.status()
            model = round_.model_of(int(status["round_id"]))
            included = round_.check(model)  # the exact mean of the updates it names
    assert proxy.cut == 1 + store_fails_at_phase_end
    assert included == {0, 1, 2, 3}, "the update whose answer was lost is in the model, once"


def test_after_a_lost_reply_only_the_same_message_is_answered_accepted(tmp_path: Path) -> None:
    """The stored update's sender may retry it (accepted, counted once); a *different* update
    from that participant is a duplicate, not silently answered `accepted`."""
    with redis_server(tmp_path) as redis, reply_dropper(redis.port) as proxy:
        port = free_port()
        config = pet_config(
            HEAD + TOTAL,
            port=port,
            redis_url=proxy.url,
            sum_prob=0.5,
            min_update_count=3,
            times=(0, 0, 0),
            max_time=120,
        )
        with coordinator_process(tmp_path, config, port) as coordinator:
            round_ = HandRound([coordinator.url], updaters=0, total=TOTAL)
            params = round_.wait_phase("sum")
            summer, summer_ephemeral = keys_for(params, Task.SUM), ephemeral()
            sum_message = compose_sum(summer, params, summer_ephemeral)
            assert round_.send(summer, params, sum_message).result == "accepted"
            params = round_.wait_phase("update")
            sums = decode_sum_dict(round_._get("/sums")[1])
            for index in (0, 1):
                keys = keys_for(params, Task.UPDATE)
                update = compose_update(keys, params, sums, models.local_model(index, HEAD, TOTAL))
                assert round_.send(keys, params, update).result == "accepted"
            keys = keys_for(params, Task.UPDATE)
            update = compose_update(keys, params, sums, models.local_model(2, HEAD, TOTAL))
            bodies = seal_messages(keys, params.pk, update, round_.max_message_size)
            for body in bodies[:-1]:
                assert http_post(coordinator.url + "/message", body)[0] == 200
            proxy.arm(b"staging:", replies=2)
            assert http_post(coordinator.url + "/message", bodies[-1])[0] == 503
            assert proxy.cut == 1
            other = compose_update(keys, params, sums, models.local_model(3, HEAD, TOTAL))
            refused = round_.send(keys, params, other)
            assert (refused.result, refused.reason) == ("rejected", "duplicate_update"), refused
            retried = round_.post_until_answered(bodies[-1], len(bodies) - 1, len(bodies), keys.public)
            assert retried.result == "accepted", retried
            params = round_.wait_phase("sum2")
            query = urllib.parse.urlencode({"pk": base64.b64encode(summer.public).decode()})
            seeds = decode_seed_dict(round_._get(f"/seeds?{query}")[1])
            sum2 = compose_sum2(summer, params, summer_ephemeral, seeds)
            assert round_.send(summer, params, sum2).result == "accepted"
            model = round_.model_of(int(coordinator.status()["round_id"]))
            assert round_.check(model) == {0, 1, 2}, "the retried update once, the other one not"
