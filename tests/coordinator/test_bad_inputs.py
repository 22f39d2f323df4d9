"""Bad inputs against a running coordinator: each gets its documented answer and changes nothing.

The round is driven by hand (min counts 2/3/2, no minimum times), so every bad message can be
sent at a known phase, followed by a check that the phase's counts did not move.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.pet_client import PetClient, ephemeral, keys_for, sealed, sealed_raw
from tests.processes import (
    CoordinatorProcess,
    coordinator_process,
    free_port,
    pet_config,
    redis_server,
    wait_until,
)
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair, seal
from xaynet.core.mask.config import MaskConfig, MaskConfigPair
from xaynet.core.mask.elements import from_ints
from xaynet.core.mask.object import MaskObject
from xaynet.core.message.header import Tag
from xaynet.core.message.payloads import SumPayload, UpdatePayload
from xaynet.sdk.tasks import Task, compose_sum, compose_sum2, compose_update

LENGTH = 4
MODELS = [[0.5, -0.25, 1.0, 0.0], [0.25, 0.75, -1.0, 0.5], [-0.5, 0.5, 0.0, 1.0]]


def _config(port: int, redis_url: str | None = None) -> str:
    return pet_config(
        LENGTH,
        port=port,
        redis_url=redis_url,
        sum_prob=0.5,
        min_sum_count=2,
        min_sum2_count=2,
        times=(0, 0, 0),
        max_time=300,
    )


@contextlib.contextmanager
def _coordinator(
    tmp_path: Path, redis_url: str | None = None
) -> Iterator[tuple[CoordinatorProcess, PetClient]]:
    port = free_port()
    with coordinator_process(tmp_path, _config(port, redis_url), port) as coordinator:
        yield coordinator, PetClient(coordinator.url)


def _wait_phase(coordinator: CoordinatorProcess, phase: str) -> dict[str, object]:
    return wait_until(lambda: (s := coordinator.status())["phase"] == phase and s, 30, f"phase {phase}")


def _accepted(coordinator: CoordinatorProcess, phase: str) -> int:
    return int(coordinator.status()["counts"][phase]["accepted"])


def test_bad_messages_through_a_whole_round(tmp_path: Path) -> None:
    with _coordinator(tmp_path) as (coordinator, client):
        _wait_phase(coordinator, "sum")
        params = client.params()
        s1, s2 = keys_for(params, Task.SUM), keys_for(params, Task.SUM)
        e1, e2 = ephemeral(), ephemeral()
        updaters = [keys_for(params, Task.UPDATE) for _ in MODELS]
        sum_message = sealed(s1, params, compose_sum(s1, params, e1))

        # -- Sum phase: nothing below may count ------------------------------------------
        stranger = EncryptKeyPair.generate()
        plain_sum = compose_sum(s1, params, e1).to_bytes()
        cases = [
            (b"garbage", 400, "decrypt"),
            (b"", 400, "decrypt"),
            (bytes(range(256)) * 2, 400, "decrypt"),
            (sum_message[:-10], 400, "decrypt"),
            (sealed_raw(s1, stranger.public, stranger.public, Tag.SUM, plain_sum), 400, "decrypt"),
            (
                sealed_raw(s1, params.pk, params.pk, Tag.SUM, plain_sum, corrupt_signature=True),
                400,
                "bad_signature",
            ),
            (sealed_raw(s1, params.pk, stranger.public, Tag.SUM, plain_sum), 400, "wrong_coordinator_key"),
            (sealed_raw(s1, params.pk, params.pk, Tag.SUM, plain_sum[:50]), 400, "bad_length"),
            (sealed(updaters[0], params, compose_sum(updaters[0], params, e2)), 200, "not_sum_eligible"),
            (
                sealed(updaters[0], params, compose_update(updaters[0], params, {}, MODELS[0])),
                200,
                "wrong_phase",
            ),
        ]
        for body, status, reason in cases:
            answer = client.post(body)
            assert (answer.status, answer.reason) == (status, reason), (reason, answer)
            assert answer.body["detail"], "every refusal says what is wrong"
        assert _accepted(coordinator, "sum") == 0

        huge = client.post(bytes(10_000_000))
        assert huge.status == 413

        assert client.post(sum_message).result == "accepted"
        again = client.post(sum_message)  # the same message again: idempotent, counted once
        assert (again.status, again.result, again.reason) == (200, "accepted", "already_accepted")
        other_key = client.post(sealed(s1, params, compose_sum(s1, params, ephemeral())))
        assert other_key.reason == "duplicate_sum"
        assert _accepted(coordinator, "sum") == 1
        assert client.sums() is None, "/sums is published only when Sum ends"
        assert client.post(sealed(s2, params, compose_sum(s2, params, e2))).result == "accepted"

        # -- Update phase ------------------------------------------------------------------
        _wait_phase(coordinator, "update")
        sums = client.sums()
        assert sums == {s1.public: e1.public, s2.public: e2.public}
        u = updaters[0]
        missing = {s1.public: sums[s1.public]}
        unknown = {s1.public: sums[s1.public], stranger.public: stranger.public}
        wrong_length = RoundParameters(
            params.pk, params.sum, params.update, params.seed, params.mask_config, LENGTH + 1
        )
        other_config = MaskConfigPair.same(MaskConfig.from_names("Integer", "F32", "B0", "M3"))
        other_params = RoundParameters(
            params.pk, params.sum, params.update, params.seed, other_config, LENGTH
        )
        good = compose_update(u, params, sums, MODELS[0])
        order = params.mask_config.vect.order
        too_big = MaskObject(
            good.masked_model.vect_config,
            from_ints([order, 0, 0, 0], False),
            good.masked_model.unit_config,
            1,
        )
        update_cases = [
            (compose_update(u, params, missing, MODELS[0]), "seed_dict_length_mismatch"),
            (compose_update(u, params, unknown, MODELS[0]), "unknown_sum_participant"),
            (compose_update(u, wrong_length, sums, [0.0] * (LENGTH + 1)), "model_length_mismatch"),
            (compose_update(u, other_params, sums, MODELS[0]), "config_mismatch"),
            (
                UpdatePayload(good.sum_signature, good.update_signature, too_big, good.local_seed_dict),
                "element_out_of_range",
            ),
            (compose_update(s1, params, sums, MODELS[0]), "not_update_eligible"),
        ]
        for payload, reason in update_cases:
            answer = client.post(sealed(u if reason != "not_update_eligible" else s1, params, payload))
            assert (answer.status, answer.result, answer.reason) == (200, "rejected", reason)
        assert (
            client.post(sealed(s1, params, SumPayload(good.sum_signature, e1.public))).reason == "wrong_phase"
        )
        assert _accepted(coordinator, "update") == 0

        first = sealed(u, params, good)
        assert client.post(first).result == "accepted"
        assert client.post(first).reason == "already_accepted"  # the same message: counted once
        assert (
            client.post(sealed(u, params, compose_update(u, params, sums, MODELS[1]))).reason
            == "duplicate_update"
        )
        assert _accepted(coordinator, "update") == 1
        for keys, model in zip(updaters[1:], MODELS[1:], strict=True):
            assert (
                client.post(sealed(keys, params, compose_update(keys, params, sums, model))).result
                == "accepted"
            )

        # -- Sum2 phase --------------------------------------------------------------------
        _wait_phase(coordinator, "sum2")
        s3 = keys_for(params, Task.SUM, avoid={s1.public, s2.public})
        seeds1 = client.seeds(s1.public)
        assert seeds1 is not None
        assert set(seeds1) == {k.public for k in updaters}
        assert client.seeds(s3.public) is None
        mask1 = compose_sum2(s1, params, e1, seeds1)
        assert client.post(sealed(u, params, mask1)).reason == "not_sum_eligible"
        assert (
            client.post(sealed(s3, params, compose_sum2(s3, params, e1, seeds1))).reason
            == "unknown_sum_participant"
        )
        assert _accepted(coordinator, "sum2") == 0
        body1 = sealed(s1, params, mask1)
        assert client.post(body1).result == "accepted"
        assert client.post(body1).reason == "already_accepted"
        seeds2 = client.seeds(s2.public)
        assert seeds2 is not None
        assert client.post(sealed(s2, params, compose_sum2(s2, params, e2, seeds2))).result == "accepted"

        # -- the round completes with exactly the three accepted updates --------------------
        wait_until(lambda: coordinator.status()["rounds_completed"] == 1, 30, "the round to complete")
        model = client.model()
        assert model is not None
        expected = np.mean(np.array(MODELS, dtype=np.float64), axis=0)
        assert np.allclose([float(v) for v in model.as_fractions()], expected, atol=1e-9)
        assert model.as_fractions()[3] == Fraction(1, 2)

        # -- a late message of the finished round: refused as such, not as garbage ---------
        _wait_phase(coordinator, "sum")
        assert client.params().pk != params.pk
        late = client.post(sum_message)
        assert (late.status, late.result, late.reason) == (200, "rejected", "round_ended"), late
        assert "previous round" in late.body["detail"]
        assert client.post(sealed(s1, params, good)).reason == "round_ended"  # an update too
        stranger = EncryptKeyPair.generate()
        garbage = client.post(seal(stranger.public, b"\x00" * 300))
        assert (garbage.status, garbage.reason) == (400, "decrypt"), "a box to no round key stays invalid"


def test_seeds_query_errors(tmp_path: Path) -> None:
    with _coordinator(tmp_path) as (coordinator, _client):
        from tests.processes import http_get

        assert http_get(coordinator.url + "/seeds")[0] == 400
        assert http_get(coordinator.url + "/seeds?pk=notbase64!")[0] == 400
        assert http_get(coordinator.url + "/seeds?pk=AAAA")[0] == 400
        assert http_get(coordinator.url + "/seeds?pk=" + "A" * 43 + "%3D")[0] == 204
        assert http_get(coordinator.url + "/model")[0] == 204
        assert http_get(coordinator.url + "/sums")[0] == 204
        assert http_get(coordinator.url + "/nothing")[0] == 404


@pytest.mark.skipif(not __import__("shutil").which("redis-server"), reason="redis-server not installed")
def test_redis_outage_mid_round(tmp_path: Path) -> None:
    with redis_server(tmp_path) as redis, _coordinator(tmp_path, redis.url) as (coordinator, client):
        _wait_phase(coordinator, "sum")
        params = client.params()
        s1, s2 = keys_for(params, Task.SUM), keys_for(params, Task.SUM)
        assert client.post(sealed(s1, params, compose_sum(s1, params, ephemeral()))).result == "accepted"

        redis.stop()
        from tests.processes import http_get

        code, body = http_get(coordinator.url + "/readyz")
        assert code == 503
        assert b"store_unavailable" in body
        second = sealed(s2, params, compose_sum(s2, params, ephemeral()))
        answer = client.post(second)
        assert (answer.status, answer.result, answer.reason) == (503, "unavailable", "store_unavailable")
        assert _accepted(coordinator, "sum") == 1

        redis.start()
        wait_until(lambda: http_get(coordinator.url + "/readyz")[0] == 200, 30, "/readyz after Redis is back")
        assert client.post(second).result == "accepted", "the client's retry of the same bytes is processed"
        _wait_phase(coordinator, "update")
        assert set(client.sums() or {}) == {s1.public, s2.public}, (
            "nothing accepted before the outage was lost"
        )
