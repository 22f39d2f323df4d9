"""The round's lease and fencing, store by store (a real redis-server, and the memory store).

One code path for both: acquisition is set-if-absent with a TTL, the token grows with every
acquisition, and *every* mutation checks the fence atomically: a coordinator whose lease
expired or was taken cannot change anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.coordinator.stores import store_clients  # noqa: F401 - the `stores` fixture
from xaynet.coordinator.store.base import (
    AggregateSnapshot,
    LeaseLostError,
    Phase,
    RoundRecord,
    Store,
    StoredModel,
)
from xaynet.coordinator.store.lease import LeaseKeeper
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.mask.config import MaskConfig, MaskConfigPair
from xaynet.core.message.assembler import ChunkGroup, ChunkLimits
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.header import Tag

PK = bytes(range(32))


def _record() -> RoundRecord:
    keys = EncryptKeyPair.generate()
    config = MaskConfigPair.same(MaskConfig.from_names("Prime", "F32", "B0", "M3"))
    return RoundRecord(1, keys, RoundParameters(keys.public, 0.5, 0.5, bytes(32), config, 4), Phase.SUM)


def _mutations(store: Store) -> dict[str, Callable[[], Awaitable[Any]]]:
    group = ChunkGroup(Tag.UPDATE, PK, 1)
    return {
        "save_round": lambda: store.save_round(_record()),
        "clear_round_data": store.clear_round_data,
        "wipe": store.wipe,
        "add_sum_participant": lambda: store.add_sum_participant(PK, PK, b"digest"),
        "add_update": lambda: store.add_update(PK, {}, b"model", b"digest"),
        "fold": lambda: store.fold(AggregateSnapshot(1, b"sum"), [PK]),
        "add_mask": lambda: store.add_mask(PK, b"mask", b"digest"),
        "save_model": lambda: store.save_model(StoredModel(1, b"model", "00")),
        "put_chunk": lambda: store.put_chunk(group, ChunkPayload(0, 1, False, b"x"), ChunkLimits(100), 0.0),
        "release_chunks": lambda: store.release_chunks(group, True),
        "add_round_totals": lambda: store.add_round_totals(1, {"rounds_completed": 1}),
    }


async def test_only_one_holder_and_the_token_grows(stores: Callable[[], Store]) -> None:
    first, second = LeaseKeeper(stores(), 0.5, "a:1"), LeaseKeeper(stores(), 0.5, "b:2")
    assert await first.try_acquire()
    assert not await second.try_acquire(), "set-if-absent: a held lease is not taken"
    assert await second.store.lease_holder() == ("a:1", first.token)
    renewal = await first.renew()
    assert renewal is not None and renewal.token == first.token
    await asyncio.sleep(0.7)  # first stops renewing: its lease expires
    assert await second.try_acquire()
    assert second.token == first.token + 1
    assert await first.renew() is None, "the old holder learns it lost the lease"


async def test_every_mutation_is_fenced(stores: Callable[[], Store]) -> None:
    old = LeaseKeeper(stores(), 0.3, "old:1")
    assert await old.try_acquire()
    assert await old.store.add_sum_participant(PK, b"e" * 32, b"d")  # the holder writes
    await asyncio.sleep(0.5)  # its lease expires (a pause, a partition): it must not write now
    before = await old.store.sum_dict()
    for name, mutate in _mutations(old.store).items():
        with pytest.raises(LeaseLostError):
            await mutate()
        assert await old.store.sum_dict() == before, f"{name} changed the store without the lease"
    new = LeaseKeeper(stores(), 5, "new:2")
    assert await new.try_acquire()
    if new.store is not old.store:  # Redis: two clients, two fences (memory: one process)
        for mutate in _mutations(old.store).values():
            with pytest.raises(LeaseLostError):
                await mutate()
    for mutate in _mutations(new.store).values():
        await mutate()  # the holder may do each of them


async def test_a_holder_that_cannot_renew_stops_accepting_before_its_ttl_runs_out(
    stores: Callable[[], Store],
) -> None:
    keeper = LeaseKeeper(stores(), 0.6, "a:1")
    assert await keeper.try_acquire()
    assert keeper.accepting()
    started = time.monotonic()
    while keeper.accepting():
        await asyncio.sleep(0.01)
    stopped_after = time.monotonic() - started
    assert stopped_after < 0.6 * 2 / 3 + 0.05
    assert await keeper.store.lease_holder() == ("a:1", keeper.token), "the store lease was still valid"


async def test_a_restarted_process_on_the_same_host_and_port_takes_its_lease_back_at_once(
    stores: Callable[[], Store],
) -> None:
    dead = LeaseKeeper(stores(), 30, "host:8081")
    assert await dead.try_acquire()
    restarted = LeaseKeeper(stores(), 30, "host:8081")
    assert await restarted.try_acquire(), "no need to wait for the TTL: it was our own lease"
    assert restarted.token == dead.token + 1
    assert not await LeaseKeeper(stores(), 30, "other:8081").try_acquire()
