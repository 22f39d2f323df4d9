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
from xaynet.coordinator.store.lease import LeaseKeeper, holder_name
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.mask.config import MaskConfig, MaskConfigPair
from xaynet.core.message.assembler import ChunkGroup, ChunkLimits
from xaynet.core.message.chunks import ChunkPayload
from xaynet.core.message.header import Tag

PK = bytes(range(32))


async def until(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    """Wait for a condition with a deadline (never a fixed sleep: busy machines are slow)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _expired(store: Store) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await store.lease_holder() is None

    return check


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
    await until(second.try_acquire)  # first stops renewing: its lease expires, second takes it
    assert second.token == first.token + 1
    assert await first.renew() is None, "the old holder learns it lost the lease"


async def test_every_mutation_is_fenced(stores: Callable[[], Store]) -> None:
    old = LeaseKeeper(stores(), 0.3, "old:1")
    assert await old.try_acquire()
    assert await old.store.add_sum_participant(PK, b"e" * 32, b"d")  # the holder writes
    await until(_expired(old.store))  # its lease expires (a pause, a partition): no more writes
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
    keeper = LeaseKeeper(stores(), 3.0, "a:1")  # 1 s between giving up and the TTL's end
    assert await keeper.try_acquire()
    assert keeper.accepting()

    async def stopped() -> bool:
        return not keeper.accepting()

    await until(stopped)  # no renewal runs: `accepting` turns false by itself
    assert await keeper.store.lease_holder() == ("a:1", keeper.token), "the store lease was still valid"


async def test_a_held_lease_is_never_taken_by_name(stores: Callable[[], Store]) -> None:
    """Two live processes may share a host name and port (different bind addresses): a name
    must not let one take the lease from the other. Names carry a per-process random tag, and
    acquisition is set-if-absent whatever the name."""
    assert holder_name(8081) != holder_name(8081), "unique per process"
    live = LeaseKeeper(stores(), 30, "host:8081")
    assert await live.try_acquire()
    same_name = LeaseKeeper(stores(), 30, "host:8081")
    assert not await same_name.try_acquire(), "a held lease is not taken, not even by its name"
    assert await live.store.lease_holder() == ("host:8081", live.token)
    assert (await live.renew()) is not None, "the holder still holds it"


async def test_a_late_renewal_of_our_own_does_not_make_the_holder_step_down(
    stores: Callable[[], Store],
) -> None:
    """A store paused past the TTL (Redis SIGSTOP) runs our queued renewals when it resumes:
    the first takes the expired lease again with a new token, the next ones still carry the
    old fence. Nobody else held the lease meanwhile, so the holder keeps it (it used to read
    this as "lost to another coordinator" and exit)."""
    keeper = LeaseKeeper(stores(), 0.3, "a:1:tag")
    assert await keeper.try_acquire()
    first_token, old_fence = keeper.token, keeper.fence
    await until(_expired(keeper.store))
    late = await keeper.store.renew_lease(old_fence, keeper.holder, 300)  # the queued renewal
    assert late == (first_token + 1, first_token)
    renewal = await keeper.renew()  # ours, still with the old fence
    assert renewal is not None and renewal.continuous and renewal.token == first_token + 1
    assert keeper.accepting()
    await keeper.store.add_sum_participant(PK, b"e" * 32, b"d")  # and it may write again


async def test_a_holder_whose_lease_another_coordinator_held_meanwhile_steps_down(
    stores: Callable[[], Store],
) -> None:
    old = LeaseKeeper(stores(), 0.3, "old:1:tag")
    assert await old.try_acquire()
    await until(_expired(old.store))
    other = LeaseKeeper(stores(), 0.3, "other:2:tag")
    assert await other.try_acquire()  # another coordinator drives the round for a while
    await until(_expired(other.store))
    renewal = await old.renew()  # the old holder takes the expired lease again …
    assert renewal is not None and not renewal.continuous, "… but the round may have changed"
