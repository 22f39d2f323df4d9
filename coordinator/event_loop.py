"""The coordinator's event loop: asyncio's own, or uvloop with `XAYNET_EVENT_LOOP=uvloop`.

uvloop (libuv) receives and answers a POST in C, so it looked like the cure for the per-chunk
HTTP cost; measured (`python -m benchmarks chunks --loop uvloop asyncio`, benchmarks/RESULTS.md)
it made no difference beyond the noise to the coordinator or to a bare aiohttp server, so it is
not a dependency and not the default: an opt-in for deployments that want to measure it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("xaynet.coordinator")
ENV = "XAYNET_EVENT_LOOP"


def loop_factory() -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """('uvloop', its factory) when asked for and installed, else ('asyncio', None)."""
    if os.environ.get(ENV, "").lower() != "uvloop":
        return "asyncio", None
    try:
        import uvloop  # noqa: PLC0415 - optional: only where it is installed
    except ImportError:
        log.warning("%s=uvloop, but uvloop is not installed (pip install uvloop): asyncio's loop", ENV)
        return "asyncio", None
    return "uvloop", uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on the loop `loop_factory` picks."""
    name, factory = loop_factory()
    log.debug("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
