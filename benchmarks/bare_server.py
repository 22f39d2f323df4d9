"""The HTTP floor of `python -m benchmarks chunks`: an aiohttp server that only reads POST bodies.

Run as its own process (`python -m benchmarks.bare_server PORT MAX_BODY`) with the same
server options and malloc tuning as the coordinator (no access log, keep-alive, freed body
buffers kept: `coordinator/allocator.py`) and on the same event loop
(`xaynet.coordinator.event_loop`: asyncio unless `XAYNET_EVENT_LOOP=uvloop`), so its CPU
time per request is what aiohttp alone costs for the same bodies sent the same way. `GET
/loop` names the loop it runs on (the benchmark prints it next to the coordinator's).
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from xaynet.coordinator import event_loop
from xaynet.coordinator.allocator import keep_freed_buffers


async def _read_and_answer(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=200)


async def _loop_name(request: web.Request) -> web.Response:
    return web.Response(text=type(asyncio.get_running_loop()).__module__)


async def _serve(port: int, max_body: int) -> None:
    keep_freed_buffers(max_body)  # as the coordinator does: no page faults per large body
    app = web.Application(client_max_size=max_body)
    app.router.add_post("/message", _read_and_answer)
    app.router.add_get("/loop", _loop_name)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=30)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
        await asyncio.Event().wait()  # until terminated
    finally:
        await runner.cleanup()


def serve(port: int, max_body: int) -> None:
    event_loop.run(_serve(port, max_body))


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
