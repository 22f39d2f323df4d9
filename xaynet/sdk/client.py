"""The coordinator's HTTP API from the participant's side (API.md), on aiohttp.

URLs are built like the original clients: one path segment appended to the base URL, the
base query kept. Every request has a timeout (the original had none and could hang
forever); transient failures are retried a few times with capped exponential backoff; what
remains becomes `CoordinatorUnreachableError`, and bodies that do not decode become
`CoordinatorProtocolError`.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from yarl import URL

from xaynet.core.bincode import RoundParameters, decode_seed_dict, decode_sum_dict
from xaynet.core.errors import XaynetError
from xaynet.core.mask.model import GlobalModel
from xaynet.sdk.errors import CoordinatorProtocolError, CoordinatorUnreachableError, ParticipantInit

T = TypeVar("T")


class _TransientError(Exception):
    """A failure worth retrying: connection problems and 5xx answers (503 with `Retry-After`:
    the coordinator's store is down, its multipart buffer is full, or it is a standby)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


MAX_RETRY_AFTER = 10.0  # seconds: a longer Retry-After is capped (the next tick retries anyway)


def _retry_after(value: str | None) -> float | None:
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value))) if value else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def _wait(backoff: Callable[[RetryCallState], float]) -> Callable[[RetryCallState], float]:
    """Wait what the coordinator's `Retry-After` says, else the exponential backoff."""

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, _TransientError) and failure.retry_after is not None:
            return failure.retry_after
        return backoff(state)

    return wait


@dataclass(frozen=True)
class PostAnswer:
    """What the coordinator said to a message: HTTP status and our coordinator's verdict headers."""

    status: int
    result: str  # accepted / rejected / discarded / buffered / invalid / unavailable ("" if not told)
    reason: str


def join_url(base: str, segment: str, query: dict[str, str] | None = None) -> str:
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ParticipantInit(f"{base!r} is not an http(s) URL")
    path = (parts.path or "/").rstrip("/") + "/" + segment if parts.path not in ("", "/") else "/" + segment
    extra = urlencode(query) if query else ""
    combined = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, combined, ""))


class CoordinatorClient:
    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        *,
        attempts: int = 3,
        timeout: float = 30.0,
    ) -> None:
        join_url(base_url, "params")  # validate now: a bad URL is a construction error
        self.base_url = base_url
        self._session = session
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        # parsed once: a multipart update posts hundreds of chunks to it
        self._message_url = URL(join_url(base_url, "message"))

    async def _request(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """`action`, retried on transient failures with backoff (or the coordinator's
        `Retry-After`). The first attempt runs outside tenacity: setting up a retry loop per
        request cost ~15 % of a chunk's client CPU, and nearly every request succeeds at once;
        after a failure, tenacity runs the remaining attempts (the first wait included)."""
        try:
            return await action()
        except _TransientError as error:
            failed = error
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=_wait(wait_exponential(multiplier=0.1, max=2.0)),
            retry=retry_if_exception_type(_TransientError),
            reraise=True,
        )
        first = True
        try:
            async for attempt in retrying:
                with attempt:
                    if first:  # attempt 1 is the one that already failed: tenacity waits, then 2…
                        first = False
                        raise failed
                    return await action()
        except _TransientError as error:
            raise CoordinatorUnreachableError(f"{what} at {self.base_url} failed: {error}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get(self, segment: str, query: dict[str, str] | None = None) -> bytes | None:
        url = join_url(self.base_url, segment, query)

        async def fetch() -> bytes | None:
            try:
                async with self._session.get(url, timeout=self._timeout) as response:
                    if response.status == 204:
                        return None
                    if response.status >= 500:
                        raise _TransientError(f"HTTP {response.status}")
                    if response.status != 200:
                        raise CoordinatorProtocolError(f"GET {url} answered HTTP {response.status}")
                    return await response.read()
            except (aiohttp.ClientError, TimeoutError) as error:
                raise _TransientError(f"{type(error).__name__}: {error}") from error

        return await self._request(f"GET /{segment}", fetch)

    async def params(self) -> tuple[RoundParameters, bytes]:
        body = await self._get("params")
        if body is None:
            raise CoordinatorProtocolError("GET /params answered 204; round parameters are always available")
        return _decode("round parameters", RoundParameters.from_bincode, body), body[:136]

    async def sums(self) -> dict[bytes, bytes] | None:
        body = await self._get("sums")
        return None if body is None else _decode("sum dictionary", decode_sum_dict, body)

    async def seeds(self, pk: bytes) -> dict[bytes, bytes] | None:
        body = await self._get("seeds", {"pk": base64.b64encode(pk).decode()})
        return None if body is None else _decode("seed dictionary", decode_seed_dict, body)

    async def model(self) -> GlobalModel | None:
        body = await self._get("model")
        return None if body is None else _decode("global model", GlobalModel.from_bincode, body)

    async def post_message(self, body: bytes) -> PostAnswer:
        url = self._message_url

        async def post() -> PostAnswer:
            try:
                async with self._session.post(url, data=body, timeout=self._timeout) as response:
                    await response.read()
                    answer = PostAnswer(
                        response.status,
                        response.headers.get("X-Xaynet-Result", ""),
                        response.headers.get("X-Xaynet-Reason", ""),
                    )
            except (aiohttp.ClientError, TimeoutError) as error:
                raise _TransientError(f"{type(error).__name__}: {error}") from error
            if answer.status == 503 and answer.reason == "chunks_missing":
                return answer  # not final, and not worth the same bytes again: the caller acts
            if answer.status >= 500:
                retry_after = _retry_after(response.headers.get("Retry-After"))
                raise _TransientError(f"HTTP {answer.status} {answer.reason}".strip(), retry_after)
            return answer

        try:
            return await self._request("POST /message", post)
        except CoordinatorUnreachableError:
            raise


def _decode(what: str, decoder: Callable[[bytes], T], body: bytes) -> T:
    try:
        return decoder(body)
    except XaynetError as error:
        raise CoordinatorProtocolError(f"the coordinator's {what} does not decode: {error.message}") from None
