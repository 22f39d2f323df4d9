"""Redis-backed store (redis-py asyncio): durable, namespaced, atomic per message.

Keys all start with `xaynet:<namespace>:` so several coordinators (rounds) can share one
Redis. Accepting an update is one Lua script that runs every check before its first write
(the original's script could leave half-written state), and it also logs the masked model
so a restarted coordinator can rebuild the aggregate; `fold` replaces logged models by a
stored running sum from time to time, keeping Redis memory O(model length).
"""

from __future__ import annotations

import functools
import json
import secrets
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from xaynet.coordinator.store.base import (
    AggregateSnapshot,
    MaskOutcome,
    Phase,
    RoundRecord,
    StoredModel,
    StoreUnavailableError,
    UpdateOutcome,
)
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair

P = ParamSpec("P")
T = TypeVar("T")

# KEYS: sum_dict, update_participants, unfolded, staged model, final model key, seed hashes…
# ARGV: update pk, then sum pk / sealed seed pairs. The model was SET to the staged key in the
# same round trip; it is renamed into place (O(1), no copy) only if every check passes.
_UPDATE_SCRIPT = """
local n = (#ARGV - 1) / 2
local function refuse(code)
  redis.call('DEL', KEYS[4])
  return code
end
if redis.call('HLEN', KEYS[1]) ~= n then return refuse(-1) end
for i = 1, n do
  if redis.call('HEXISTS', KEYS[1], ARGV[2 * i]) == 0 then return refuse(-2) end
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return refuse(-3) end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('RENAME', KEYS[4], KEYS[5])
for i = 1, n do
  redis.call('HSET', KEYS[5 + i], ARGV[1], ARGV[1 + 2 * i])
end
return 0
"""

_MASK_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return -2 end
redis.call('ZINCRBY', KEYS[3], 1, ARGV[2])
return 0
"""

_UPDATE_OUTCOMES = {
    0: UpdateOutcome.ACCEPTED,
    -1: UpdateOutcome.LENGTH_MISMATCH,
    -2: UpdateOutcome.UNKNOWN_SUM_PARTICIPANT,
    -3: UpdateOutcome.DUPLICATE,
}
_MASK_OUTCOMES = {0: MaskOutcome.ACCEPTED, -1: MaskOutcome.UNKNOWN_SUM_PARTICIPANT, -2: MaskOutcome.DUPLICATE}


def _guarded(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn Redis failures into `StoreUnavailableError` and report each call's latency."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        assert isinstance(store, RedisStore)
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"Redis at {store.safe_url} failed: {exc}") from exc
        finally:
            store.observe(method.__name__, time.perf_counter() - start)

    return wrapper


class RedisStore:
    kind = "redis"

    def __init__(
        self,
        url: str,
        namespace: str,
        observe: Callable[[str, float], None] | None = None,
        timeout: float = 5.0,
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, health_check_interval=10
        )
        self.safe_url = _without_password(url)
        self.prefix = f"xaynet:{namespace}:"
        self.observe = observe or (lambda _op, _seconds: None)
        self._update_script = self._redis.register_script(_UPDATE_SCRIPT)
        self._mask_script = self._redis.register_script(_MASK_SCRIPT)

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _seed_key(self, sum_pk: bytes) -> str:
        return self.prefix + "seeds:" + sum_pk.hex()

    def _model_key(self, update_pk: bytes) -> str:
        return self.prefix + "models:" + update_pk.hex()

    @_guarded
    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()

    # -- round bookkeeping -------------------------------------------------------------------
    @_guarded
    async def load_round(self) -> RoundRecord | None:
        raw = await self._redis.get(self._key("round"))
        if raw is None:
            return None
        data = json.loads(raw)
        return RoundRecord(
            round_id=int(data["round_id"]),
            keys=EncryptKeyPair.from_secret(bytes.fromhex(data["secret"])),
            params=RoundParameters.from_bincode(bytes.fromhex(data["params"])),
            phase=Phase(data["phase"]),
        )

    @_guarded
    async def save_round(self, record: RoundRecord) -> None:
        # The round's secret key is stored in clear, like the original: protect Redis access.
        data = {
            "round_id": record.round_id,
            "secret": record.keys.secret.hex(),
            "params": record.params.to_bincode().hex(),
            "phase": record.phase.value,
        }
        await self._redis.set(self._key("round"), json.dumps(data))

    async def _round_keys(self) -> list[str]:
        keys = [
            self._key(k)
            for k in (
                "sum_dict",
                "update_participants",
                "unfolded",
                "aggregate",
                "mask_submitted",
                "mask_dict",
            )
        ]
        for pattern in ("seeds:*", "models:*", "staging:*"):
            async for key in self._redis.scan_iter(match=self._key(pattern), count=1000):
                keys.append(key.decode() if isinstance(key, bytes) else key)
        return keys

    @_guarded
    async def clear_round_data(self) -> None:
        keys = await self._round_keys()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*keys)
            await pipe.execute()

    @_guarded
    async def wipe(self) -> None:
        keys = await self._round_keys() + [self._key("round"), self._key("model")]
        await self._redis.delete(*keys)

    # -- sum ---------------------------------------------------------------------------------
    @_guarded
    async def add_sum_participant(self, pk: bytes, ephm_pk: bytes) -> bool:
        return bool(await self._redis.hsetnx(self._key("sum_dict"), pk, ephm_pk))

    @_guarded
    async def sum_dict(self) -> dict[bytes, bytes]:
        raw: dict[bytes, bytes] = await self._redis.hgetall(self._key("sum_dict"))
        return dict(raw)

    # -- update ------------------------------------------------------------------------------
    @_guarded
    async def add_update(
        self, pk: bytes, local_seed_dict: dict[bytes, bytes], masked_model: bytes
    ) -> UpdateOutcome:
        sum_pks = list(local_seed_dict)
        staging = self._key("staging:" + secrets.token_hex(16))
        keys = [self._key("sum_dict"), self._key("update_participants"), self._key("unfolded"), staging]
        keys += [self._model_key(pk)] + [self._seed_key(sum_pk) for sum_pk in sum_pks]
        args: list[Any] = [pk]
        for sum_pk in sum_pks:
            args += [sum_pk, local_seed_dict[sum_pk]]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(staging, masked_model)
            await self._update_script(keys=keys, args=args, client=pipe)
            _, result = await pipe.execute()
        return _UPDATE_OUTCOMES[int(result)]

    @_guarded
    async def update_count(self) -> int:
        return int(await self._redis.scard(self._key("update_participants")))

    @_guarded
    async def update_participants(self) -> set[bytes]:
        return set(await self._redis.smembers(self._key("update_participants")))

    @_guarded
    async def stored_model(self, pk: bytes) -> bytes | None:
        raw = await self._redis.get(self._model_key(pk))
        return None if raw is None else bytes(raw)

    @_guarded
    async def seed_dict(self) -> dict[bytes, dict[bytes, bytes]]:
        sum_pks: list[bytes] = await self._redis.hkeys(self._key("sum_dict"))
        async with self._redis.pipeline(transaction=False) as pipe:
            for sum_pk in sum_pks:
                pipe.hgetall(self._seed_key(sum_pk))
            results = await pipe.execute()
        return {sum_pk: dict(entries) for sum_pk, entries in zip(sum_pks, results, strict=True)}

    @_guarded
    async def unfolded_models(self) -> dict[bytes, bytes]:
        pks = sorted(await self._redis.smembers(self._key("unfolded")))
        if not pks:
            return {}
        bodies = await self._redis.mget([self._model_key(pk) for pk in pks])
        missing = [pk.hex() for pk, body in zip(pks, bodies, strict=True) if body is None]
        if missing:
            raise StoreUnavailableError(f"accepted models are missing from Redis: {missing[:3]}")
        return {pk: bytes(body) for pk, body in zip(pks, bodies, strict=True)}

    @_guarded
    async def fold(self, snapshot: AggregateSnapshot, folded: list[bytes]) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("aggregate"), struct.pack("<Q", snapshot.nb_models) + snapshot.body)
            if folded:
                pipe.srem(self._key("unfolded"), *folded)
                pipe.delete(*(self._model_key(pk) for pk in folded))
            await pipe.execute()

    @_guarded
    async def aggregate_snapshot(self) -> AggregateSnapshot | None:
        raw = await self._redis.get(self._key("aggregate"))
        if raw is None:
            return None
        (count,) = struct.unpack_from("<Q", raw)
        return AggregateSnapshot(count, bytes(raw[8:]))

    # -- sum2 --------------------------------------------------------------------------------
    @_guarded
    async def add_mask(self, pk: bytes, mask: bytes) -> MaskOutcome:
        keys = [self._key("sum_dict"), self._key("mask_submitted"), self._key("mask_dict")]
        result = await self._mask_script(keys=keys, args=[pk, mask])
        return _MASK_OUTCOMES[int(result)]

    @_guarded
    async def mask_senders(self) -> set[bytes]:
        return set(await self._redis.smembers(self._key("mask_submitted")))

    @_guarded
    async def best_masks(self) -> list[tuple[bytes, int]]:
        raw = await self._redis.zrevrange(self._key("mask_dict"), 0, 1, withscores=True)
        return [(bytes(member), int(score)) for member, score in raw]

    @_guarded
    async def unique_masks(self) -> int:
        return int(await self._redis.zcard(self._key("mask_dict")))

    # -- global model ------------------------------------------------------------------------
    @_guarded
    async def save_model(self, model: StoredModel) -> None:
        await self._redis.hset(
            self._key("model"),
            mapping={"round_id": model.round_id, "body": model.body, "checksum": model.checksum},
        )

    @_guarded
    async def load_model(self) -> StoredModel | None:
        raw = await self._redis.hgetall(self._key("model"))
        if not raw:
            return None
        return StoredModel(int(raw[b"round_id"]), bytes(raw[b"body"]), raw[b"checksum"].decode())


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':***@' if user else ':***@'}{host}"
