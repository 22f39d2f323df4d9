"""One PET round driven by hand over real HTTP, every message multipart, every answer recorded.

Participants behave like the original clients: chunks are posted one by one, and a chunk
whose answer is not 2xx is re-posted (the identical bytes) until it is. Several coordinator
URLs may be given (replicas behind one Service): a standby's 503 sends the request to the
next URL. Each answer is kept with the wall time, the answering coordinator's lease holder
and token, so a test can count what was accepted, by whom, and when.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

from tests import models
from tests.pet_client import ephemeral, keys_for
from tests.processes import http_get, http_post, wait_until
from xaynet.core.bincode import RoundParameters, decode_seed_dict, decode_sum_dict
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair
from xaynet.core.mask.model import GlobalModel
from xaynet.core.message.envelope import seal_messages
from xaynet.core.message.payloads import Payload
from xaynet.sdk.tasks import Task, compose_sum, compose_sum2, compose_update

HEAD = 4
MAX_MESSAGE_SIZE = 260  # chunk data 68 bytes: a sum message is 2 chunks, an update 6


@dataclass(frozen=True)
class Posted:
    at: float
    status: int
    result: str
    reason: str
    holder: str
    token: int
    chunk: int
    chunks: int
    who: bytes


@dataclass
class HandRound:
    urls: list[str]
    updaters: int = 3
    total: int = 3
    max_message_size: int = MAX_MESSAGE_SIZE
    answers: list[Posted] = field(default_factory=list)
    sent: list[list[bytes]] = field(default_factory=list)  # the POST bodies of every message
    before_chunk: Callable[[int, int, bytes], None] = lambda _i, _n, _who: None
    retry_for: float = 120.0

    @property
    def length(self) -> int:
        return HEAD + self.total

    # -- transport ------------------------------------------------------------------------
    def _get(self, path: str) -> tuple[int, bytes]:
        """GET from whichever replica serves the round (a standby answers 503)."""
        for url in self.urls:
            try:
                code, body = http_get(url + path, timeout=5)
            except OSError:
                continue
            if code != 503:
                return code, body
        return 503, b""

    def status(self) -> dict[str, object] | None:
        code, body = self._get("/status")
        return json.loads(body) if code == 200 else None

    def wait_phase(self, phase: str, timeout: float = 120) -> RoundParameters:
        wait_until(
            lambda: (s := self.status()) is not None and s["phase"] == phase, timeout, f"phase {phase}"
        )
        code, body = self._get("/params")
        assert code == 200
        return RoundParameters.from_bincode(body)

    def post_until_answered(self, body: bytes, chunk: int, chunks: int, who: bytes) -> Posted:
        """Re-post the identical bytes until an answer other than 5xx comes (the wheel's rule)."""
        deadline = time.monotonic() + self.retry_for
        while True:
            for url in self.urls:
                try:
                    code, headers, _ = http_post(url + "/message", body, timeout=10)
                except OSError:
                    continue
                lowered = {k.lower(): v for k, v in headers.items()}
                posted = Posted(
                    time.time(),
                    code,
                    lowered.get("x-xaynet-result", ""),
                    lowered.get("x-xaynet-reason", ""),
                    lowered.get("x-xaynet-holder", ""),
                    int(lowered.get("x-xaynet-lease-token", "0")),
                    chunk,
                    chunks,
                    who,
                )
                self.answers.append(posted)
                if code < 500:
                    return posted
            assert time.monotonic() < deadline, (
                f"no final answer within {self.retry_for}s: {self.answers[-1]}"
            )
            time.sleep(0.2)

    def send(self, keys: SigningKeyPair, params: RoundParameters, payload: Payload) -> Posted:
        bodies = seal_messages(keys, params.pk, payload, self.max_message_size)
        self.sent.append(bodies)
        answer = None
        for index, body in enumerate(bodies):
            self.before_chunk(index, len(bodies), keys.public)
            answer = self.post_until_answered(body, index, len(bodies), keys.public)
        assert answer is not None
        return answer

    # -- the round ------------------------------------------------------------------------
    def run(self) -> tuple[int, set[bytes]]:
        """Sum, Update, Sum2 with fresh identities; returns the round id and who was accepted."""
        params = self.wait_phase("sum")
        status = self.status()
        assert status is not None
        round_id = int(status["round_id"])  # type: ignore[call-overload]
        summer = keys_for(params, Task.SUM)
        summer_ephemeral: EncryptKeyPair = ephemeral()
        accepted: set[bytes] = set()
        answer = self.send(summer, params, compose_sum(summer, params, summer_ephemeral))
        assert answer.result == "accepted", answer
        params = self.wait_phase("update")
        _, raw_sums = self._get("/sums")
        sums = decode_sum_dict(raw_sums)
        for index in range(self.updaters):
            keys = keys_for(params, Task.UPDATE)
            weights = models.local_model(index, HEAD, self.total)
            answer = self.send(keys, params, compose_update(keys, params, sums, weights))
            assert answer.result == "accepted", answer
            accepted.add(keys.public)
        params = self.wait_phase("sum2")
        query = urllib.parse.urlencode({"pk": base64.b64encode(summer.public).decode()})
        code, raw_seeds = self._get(f"/seeds?{query}")
        assert code == 200, code
        seeds = decode_seed_dict(raw_seeds)
        answer = self.send(summer, params, compose_sum2(summer, params, summer_ephemeral, seeds))
        assert answer.result == "accepted", answer
        return round_id, accepted

    def model_of(self, round_id: int, timeout: float = 60) -> GlobalModel:
        def fetch() -> GlobalModel | None:
            code, body = self._get("/model")
            if code != 200:
                return None
            status = self.status()
            if status is None or status["global_model"] is None:
                return None
            if status["global_model"]["round_id"] != round_id:  # type: ignore[index]
                return None
            return GlobalModel.from_bincode(body)

        model: GlobalModel = wait_until(fetch, timeout, f"the global model of round {round_id}")
        return model

    def check(self, model: GlobalModel) -> set[int]:
        """Exactly the mean of the updates the model names (all of them, nothing else)."""
        included = models.check_global_model(model, HEAD, self.total)
        tail = model.as_fractions()[HEAD:]
        assert all(share == Fraction(1, len(included)) for i, share in enumerate(tail) if i in included)
        return included
