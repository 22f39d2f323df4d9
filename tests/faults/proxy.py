"""A recording HTTP proxy between participants and coordinators: what was each sender told?

Usage: python -m tests.faults.proxy PORT LOG.jsonl [--gate] [--latency MIN_MS,MAX_MS] BACKEND_URL...

Every participant gets its own base URL, `http://127.0.0.1:PORT/<sender>` (API.md §2.2: both
the wheel and our SDK append the route to the base path), so the proxy knows who sent each
request without opening the sealed bodies. It forwards the request unchanged and appends one
JSON line per `POST /message` (sender, the round parameters that sender last fetched, size,
status, `X-Xaynet-*` answer headers, which backend answered, monotonic start/end) and per
`GET /model` (the `X-Xaynet-Round` it was served). The fault suite's accounting reads that log:
it is the participants' view, whatever the coordinators believe.

A backend that fails mid-request (killed) is answered `502` with no verdict header — what an
ingress answers when its upstream dies; both clients retry it like a reset connection. With
`--gate`, requests go only to backends whose `/readyz` answers 200 (a Kubernetes Service
routes to ready pods only); none ready → `503`, as an ingress without endpoints.
`--latency` delays each `POST /message` by a random time before forwarding it (a mobile
network): a multipart message then stays in flight long enough for a fault to cut it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

PING = "/_proxy/ping"
_SKIP_HEADERS = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}


class Recorder:
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", buffering=1)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")


class Proxy:
    def __init__(
        self, backends: list[str], recorder: Recorder, gate: bool, latency: tuple[float, float] = (0, 0)
    ) -> None:
        self.backends = backends
        self.latency = latency
        self.ready = set(backends) if not gate else set()
        self.gate = gate
        self.recorder = recorder
        self.params_seen: dict[str, str] = {}  # sender → sha256 of the /params body it last got
        self.session: aiohttp.ClientSession | None = None
        self._rng = random.Random()

    async def start(self, app: web.Application) -> None:
        # A fresh upstream connection per request: a pooled connection to a killed process
        # would fail requests that a live coordinator could answer.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0),
            timeout=aiohttp.ClientTimeout(total=300, sock_connect=2),
            auto_decompress=False,
        )
        if self.gate:
            app["gate_task"] = asyncio.create_task(self._watch_readiness())

    async def stop(self, app: web.Application) -> None:
        task = app.get("gate_task")
        if task is not None:
            task.cancel()
        if self.session is not None:
            await self.session.close()

    async def _watch_readiness(self) -> None:
        assert self.session is not None
        while True:
            for backend in self.backends:
                try:
                    async with self.session.get(
                        backend + "/readyz", timeout=aiohttp.ClientTimeout(total=1)
                    ) as response:
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    self.ready.add(backend)
                else:
                    self.ready.discard(backend)
            await asyncio.sleep(0.1)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == PING:
            return web.Response(text="ok")
        sender, _, route = request.path.lstrip("/").partition("/")
        body = await request.read()
        started = time.monotonic()
        if route == "message" and self.latency[1] > 0:
            await asyncio.sleep(self._rng.uniform(*self.latency))
        candidates = sorted(self.ready)
        backend = self._rng.choice(candidates) if candidates else None
        status, headers, answer = 503, dict[str, str](), b""
        if backend is not None:
            status, headers, answer = await self._forward(request, backend, route, body)
        finished = time.monotonic()
        self._record(sender, route, request.method, body, backend, status, headers, started, finished)
        if route == "params" and status == 200:
            self.params_seen[sender] = hashlib.sha256(answer[:136]).hexdigest()[:16]
        return web.Response(status=status, body=answer, headers=headers)

    async def _forward(
        self, request: web.Request, backend: str, route: str, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self.session is not None
        raw = backend + "/" + request.raw_path.lstrip("/").partition("/")[2]  # route and raw query
        try:
            async with self.session.request(
                request.method, URL(raw, encoded=True), data=body if body else None
            ) as response:
                answer = await response.read()
                headers = {k: v for k, v in response.headers.items() if k.lower() not in _SKIP_HEADERS}
                return response.status, headers, answer
        except (aiohttp.ClientError, TimeoutError, ConnectionError):
            return 502, {}, b""

    def _record(
        self,
        sender: str,
        route: str,
        method: str,
        body: bytes,
        backend: str | None,
        status: int,
        headers: dict[str, str],
        started: float,
        finished: float,
    ) -> None:
        if method == "POST" and route == "message":
            self.recorder.write(
                {
                    "kind": "message",
                    "sender": sender,
                    "params": self.params_seen.get(sender),
                    "size": len(body),
                    "body": hashlib.sha256(body).hexdigest()[:16],
                    "status": status,
                    "xaynet": {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-xaynet-")},
                    "backend": backend,
                    "t0": started,
                    "t1": finished,
                }
            )
        elif method == "GET" and route == "model":
            self.recorder.write(
                {
                    "kind": "model",
                    "sender": sender,
                    "status": status,
                    "round": headers.get("X-Xaynet-Round"),
                    "t1": finished,
                }
            )


def main(argv: list[str]) -> None:
    gate = "--gate" in argv
    args = [a for a in argv if a != "--gate"]
    latency = (0.0, 0.0)
    if "--latency" in args:
        at = args.index("--latency")
        low, high = (float(ms) / 1000 for ms in args[at + 1].split(","))
        latency = (low, high)
        del args[at : at + 2]
    port, log, backends = int(args[0]), Path(args[1]), args[2:]
    proxy = Proxy([b.rstrip("/") for b in backends], Recorder(log), gate, latency)
    app = web.Application(client_max_size=1 << 30)
    app.on_startup.append(proxy.start)
    app.on_cleanup.append(proxy.stop)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, handle_signals=True)


if __name__ == "__main__":
    main(sys.argv[1:])
