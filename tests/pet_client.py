"""A hand-driven participant for tests: builds real PET messages and posts them one by one."""

from __future__ import annotations

import base64
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any

from tests.processes import http_get, http_post
from xaynet.core.bincode import RoundParameters, decode_seed_dict, decode_sum_dict
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, seal
from xaynet.core.mask.model import GlobalModel
from xaynet.core.message.envelope import seal_messages, sign_message
from xaynet.core.message.header import Tag
from xaynet.core.message.payloads import Payload
from xaynet.sdk.tasks import Task, select_task


@dataclass
class Answer:
    status: int
    result: str
    reason: str
    body: dict[str, Any]


class PetClient:
    def __init__(self, url: str) -> None:
        self.url = url

    def params(self) -> RoundParameters:
        code, body = http_get(self.url + "/params")
        assert code == 200
        return RoundParameters.from_bincode(body)

    def post(self, body: bytes) -> Answer:
        code, headers, raw = http_post(self.url + "/message", body)
        lowered = {k.lower(): v for k, v in headers.items()}
        parsed = (
            json.loads(raw) if raw and lowered.get("content-type", "").startswith("application/json") else {}
        )
        return Answer(code, lowered.get("x-xaynet-result", ""), lowered.get("x-xaynet-reason", ""), parsed)

    def sums(self) -> dict[bytes, bytes] | None:
        code, body = http_get(self.url + "/sums")
        return decode_sum_dict(body) if code == 200 else None

    def seeds(self, pk: bytes) -> dict[bytes, bytes] | None:
        query = urllib.parse.urlencode({"pk": base64.b64encode(pk).decode()})
        code, body = http_get(f"{self.url}/seeds?{query}")
        return decode_seed_dict(body) if code == 200 else None

    def model(self) -> GlobalModel | None:
        code, body = http_get(self.url + "/model")
        return GlobalModel.from_bincode(body) if code == 200 else None


def keys_for(params: RoundParameters, task: Task, avoid: set[bytes] | None = None) -> SigningKeyPair:
    """A fresh identity that the round's lottery gives `task`."""
    for _ in range(10_000):
        keys = SigningKeyPair.generate()
        if select_task(keys, params) is task and keys.public not in (avoid or set()):
            return keys
    raise AssertionError(f"no key found for {task}")


def sealed(keys: SigningKeyPair, params: RoundParameters, payload: Payload) -> bytes:
    (body,) = seal_messages(keys, params.pk, payload)
    return body


def sealed_raw(
    keys: SigningKeyPair,
    recipient: bytes,
    named_pk: bytes,
    tag: Tag,
    payload: bytes,
    corrupt_signature: bool = False,
) -> bytes:
    plain = bytearray(sign_message(keys, named_pk, tag, payload))
    if corrupt_signature:
        plain[5] ^= 0x40
    return seal(recipient, bytes(plain))


def ephemeral() -> EncryptKeyPair:
    return EncryptKeyPair.generate()
