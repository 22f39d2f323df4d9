"""A fixture of store clients sharing one namespace: the memory store, and a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.processes import redis_server
from xaynet.coordinator.store.base import Store
from xaynet.coordinator.store.memory import MemoryStore
from xaynet.coordinator.store.redis_store import RedisStore


@pytest.fixture(name="stores", params=["memory", "redis"])
async def store_clients(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Store]]:
    """A factory of store clients that share one namespace (two coordinators, one Redis)."""
    if request.param == "memory":
        shared = MemoryStore()
        yield lambda: shared
        return
    with redis_server(tmp_path) as redis:
        opened: list[RedisStore] = []

        def make() -> Store:
            opened.append(RedisStore(redis.url, "lease-test"))
            return opened[-1]

        yield make
        for store in opened:
            await store.close()
