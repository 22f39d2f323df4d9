"""Whole messages: sign-then-seal on the way out, open-verify-parse on the way in.

Outgoing: payload → header → Ed25519 signature over [64, length) → sealed box to the round
key (chunked first if the client has a maximum message size). Incoming, cheapest check
first (WIRE.md §6): open the box → header and length → coordinator key → signature →
payload. Nothing half-parsed escapes: every failure is a typed `XaynetError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair, seal, verify_signed
from xaynet.core.errors import KeyMismatchError
from xaynet.core.message.chunks import ChunkPayload, split_payload
from xaynet.core.message.header import HEADER_LENGTH, Header, Tag, signed_part, unsigned_message
from xaynet.core.message.payloads import Payload, parse_payload


@dataclass(frozen=True)
class Message:
    """A verified, parsed message: a complete payload, or one chunk of a multipart one."""

    header: Header
    payload: Payload | ChunkPayload

    @property
    def participant_pk(self) -> bytes:
        return self.header.participant_pk

    @property
    def tag(self) -> Tag:
        return self.header.tag


def sign_message(
    keys: SigningKeyPair, coordinator_pk: bytes, tag: Tag, payload: bytes, multipart: bool = False
) -> bytes:
    """The signed plaintext of one message (header ‖ payload)."""
    buf = unsigned_message(keys.public, coordinator_pk, tag, multipart, payload)
    buf[0:64] = keys.sign(bytes(signed_part(buf)))
    return bytes(buf)


def encode_messages(
    keys: SigningKeyPair, coordinator_pk: bytes, payload: Payload, max_message_size: int | None = None
) -> list[bytes]:
    """Signed plaintexts for `payload`: one, or one per chunk if it is too large."""
    raw = payload.to_bytes()
    chunks = split_payload(raw, max_message_size)
    if chunks is None:
        return [sign_message(keys, coordinator_pk, payload.tag, raw)]
    return [sign_message(keys, coordinator_pk, payload.tag, c.to_bytes(), multipart=True) for c in chunks]


def seal_messages(
    keys: SigningKeyPair, coordinator_pk: bytes, payload: Payload, max_message_size: int | None = None
) -> list[bytes]:
    """POST bodies for `payload`, sealed to the round's coordinator key."""
    return [seal(coordinator_pk, m) for m in encode_messages(keys, coordinator_pk, payload, max_message_size)]


def open_message(sealed: bytes | memoryview, round_keys: EncryptKeyPair) -> bytes:
    """The plaintext of a POST body (raises `DecryptError`)."""
    return round_keys.open(sealed)


def parse_message(plain: bytes, coordinator_pk: bytes | None = None, header: Header | None = None) -> Message:
    """Check and parse a signed plaintext; `coordinator_pk` is the round key it must name.

    `header`: `Header.parse(plain)` if the caller has it already (once per chunk is enough)."""
    header = Header.parse(plain) if header is None else header
    if coordinator_pk is not None and header.coordinator_pk != coordinator_pk:
        raise KeyMismatchError("the message is addressed to another coordinator key (another round)")
    verify_signed(header.participant_pk, bytes(plain))  # the plaintext is signature ‖ signed bytes
    body = memoryview(plain)[HEADER_LENGTH:]
    if header.multipart:
        return Message(header, ChunkPayload.parse(body))
    return Message(header, parse_payload(header.tag, body))
