"""A TCP proxy in front of a real redis-server that can lose one reply.

`ReplyDropper` forwards every byte both ways until it is armed with a marker. The next request
that contains the marker is delivered to Redis (so Redis runs it), but the connection is cut
as soon as Redis's replies to it have arrived: the client sees a connection error, exactly
like a reply lost in the network after the write happened. No sleeps: the cut waits for the
replies themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from tests.processes import free_port


@dataclass
class ReplyDropper:
    target_port: int
    port: int = field(default_factory=free_port)
    marker: bytes = b""
    replies: int = 1  # how many Redis replies the marked request produces (a pipeline: more)
    cut: int = 0  # how many replies were lost so far
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, marker: bytes, replies: int = 1) -> None:
        """Lose the replies to the next request containing `marker` (once)."""
        with self._lock:
            self.marker, self.replies = marker, replies

    def _take(self, data: bytes) -> int:
        with self._lock:
            if self.marker and self.marker in data:
                self.marker = b""
                return self.replies
            return 0

    async def _serve(self, ready: threading.Event, stop: asyncio.Event) -> None:
        async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
            redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self.target_port)
            dropping = [0]  # replies still to swallow before the cut (0: forward)

            async def upstream() -> None:
                while data := await client_r.read(65536):
                    expected = self._take(data)
                    if expected:
                        dropping[0] = expected
                    redis_w.write(data)
                    await redis_w.drain()

            async def downstream() -> None:
                swallowed = b""
                while data := await redis_r.read(65536):
                    if dropping[0]:
                        swallowed += data
                        if swallowed.count(b"\r\n") >= dropping[0]:
                            self.cut += 1
                            return  # Redis answered: the answer is lost, the connection cut
                        continue
                    client_w.write(data)
                    await client_w.drain()

            tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            for writer in (client_w, redis_w):
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", self.port)
        ready.set()
        async with server:
            await stop.wait()


@contextlib.contextmanager
def reply_dropper(target_port: int) -> Iterator[ReplyDropper]:
    proxy = ReplyDropper(target_port)
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy._serve(ready, stop))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the Redis proxy did not start")
    try:
        yield proxy
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
