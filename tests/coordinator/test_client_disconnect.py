"""A client that goes away mid-body (a phone losing its network) changes nothing and leaves one
debug line, not aiohttp's ERROR with a traceback; the coordinator keeps serving."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.processes import coordinator_process, free_port, http_get, pet_config, wait_until


def _half_request(port: int, chunked: bool) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if chunked:
            head = b"POST /message HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            sock.sendall(head + b"1000\r\n" + b"\0" * 100)
        else:
            head = b"POST /message HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
            sock.sendall(head + b"\0" * 100)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST on close


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_client_gone_mid_body_changes_nothing(tmp_path: Path, chunked: bool) -> None:
    port = free_port()
    config = pet_config(4, port=port, log_filter="xaynet=debug,info", max_time=600)
    with coordinator_process(tmp_path, config, port) as coordinator:
        before = coordinator.status()["counts"]
        for _ in range(3):
            _half_request(port, chunked)
        wait_until(
            lambda: "client disconnected before its body arrived" in coordinator.logs(),
            30,
            "the debug line about the disconnected client",
        )
        assert http_get(coordinator.url + "/healthz")[0] == 200
        assert coordinator.status()["counts"] == before
        logs = coordinator.logs()
        assert "Error handling request" not in logs and "Traceback" not in logs
