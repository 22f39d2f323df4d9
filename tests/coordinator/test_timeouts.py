"""Slow and stuck clients are cut off: real sockets against a real coordinator process.

`[api] read_timeout` (2 s here, 30 s by default) bounds how long a connection may take to
send its request headers; a body gets that plus 1 s per 64 KiB; a body larger than any
message is refused from its Content-Length without waiting for it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import CoordinatorProcess, coordinator_process, free_port, http_get, pet_config

READ_TIMEOUT = 2


@pytest.fixture
def coordinator(tmp_path: Path) -> Iterator[CoordinatorProcess]:
    port = free_port()
    env = {"XAYNET_API__READ_TIMEOUT": str(READ_TIMEOUT)}
    with coordinator_process(tmp_path, pet_config(4, port=port), port, env=env) as running:
        yield running


def _connect(port: int, first_bytes: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(first_bytes)
    sock.setblocking(False)
    return sock


def _wait_closed(socks: list[socket.socket], timeout: float) -> tuple[int, dict[int, bytes]]:
    """Read each socket until the server closes it; return (#closed, what each received)."""
    received: dict[int, bytes] = {s.fileno(): b"" for s in socks}
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    closed = 0
    deadline = time.monotonic() + timeout
    while closed < len(socks) and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data:
                received[sock.fileno()] += data
                continue
            selector.unregister(sock)
            closed += 1
    selector.close()
    return closed, received


def test_500_slow_connections_are_closed(coordinator: CoordinatorProcess) -> None:
    partial = b"POST /message HTTP/1.1\r\nHost: coordinator\r\nContent-Le"
    socks = [_connect(coordinator.port, partial) for _ in range(500)]
    try:
        started = time.monotonic()
        assert http_get(coordinator.url + "/params")[0] == 200, "others are served meanwhile"
        closed, _ = _wait_closed(socks, timeout=READ_TIMEOUT + 30)
        assert closed == 500, f"{500 - closed} slow connections still open"
        assert time.monotonic() - started >= READ_TIMEOUT - 0.5, "not closed before the timeout"
    finally:
        for sock in socks:
            sock.close()
    assert http_get(coordinator.url + "/params")[0] == 200


def test_huge_content_length_is_answered_at_once(coordinator: CoordinatorProcess) -> None:
    request = b"POST /message HTTP/1.1\r\nHost: coordinator\r\nContent-Length: 1000000000000\r\n\r\n"
    with contextlib.closing(_connect(coordinator.port, request)) as sock:
        closed, received = _wait_closed([sock], timeout=READ_TIMEOUT + 20)
        answer = received[sock.fileno()]
    assert closed == 1
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"this one announces 1000000000000" in answer


def test_body_that_stops_arriving_gets_408(coordinator: CoordinatorProcess) -> None:
    request = b"POST /message HTTP/1.1\r\nHost: coordinator\r\nContent-Length: 1000\r\n\r\n" + bytes(10)
    with contextlib.closing(_connect(coordinator.port, request)) as sock:
        closed, received = _wait_closed([sock], timeout=READ_TIMEOUT + 20)
        answer = received[sock.fileno()]
    assert closed == 1
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert http_get(coordinator.url + "/healthz")[0] == 200
