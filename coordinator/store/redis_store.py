"""Redis-backed store (redis-py asyncio): durable, namespaced, atomic per message.

Keys all start with `xaynet:<namespace>:` so several coordinators (rounds) can share one
Redis. Accepting an update is one Lua script that runs every check before its first write
(the original's script could leave half-written state), and it also logs the masked model
so a restarted coordinator can rebuild the aggregate; `fold` replaces logged models by a
stored running sum from time to time, keeping Redis memory O(model length).

Fencing: the round's lease is the key `lease`, value `<token>|<holder>`, with a TTL
(store/lease.py). Every write is a Lua script whose first step compares that key with the
fence this coordinator was given, so a coordinator that lost its lease cannot change
anything, not even with a write already in flight. Multipart chunks live here too, with the
round (`chunk:<tag>:<pk>:<id>` hashes, an LRU index and a byte counter), so a restarted
coordinator or the one that takes over finds them.

Layout compatibility: the keys of the previous release are read and written unchanged; the
new keys (`lease`, `lease_token`, `accepted`, `chunk*`) are optional: a round started by the
previous build resumes here (tests/coordinator/test_store_compat.py).
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
from redis.exceptions import RedisError, ResponseError

from xaynet.coordinator.store.base import (
    AggregateSnapshot,
    ArchiveItem,
    LeaseLostError,
    MaskOutcome,
    Phase,
    RoundRecord,
    StoredModel,
    StoreUnavailableError,
    UpdateOutcome,
)
from xaynet.core.bincode import RoundParameters
from xaynet.core.crypto import EncryptKeyPair
from xaynet.core.message.assembler import (
    CHUNK_OVERHEAD,
    ChunkGroup,
    ChunkLimits,
    ChunkPut,
    ChunkStatus,
    chunk_digest,
)
from xaynet.core.message.chunks import ChunkPayload

P = ParamSpec("P")
T = TypeVar("T")

FENCED = "XAYNET_FENCED"
# Every write script starts with this: KEYS[1] is the lease key, ARGV[1] our fence value.
_FENCE = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('{FENCED} the round lease is not held with this token')
end
"""

# The tenure key `lease_tenure` = `<first token>|<holder>`: since which token the current
# holder has held the lease without anyone else in between. A renewal that finds the lease
# re-taken (by a late, queued renewal of our own after a store pause) is continuous only if
# the tenure began at or before the token we know; if another coordinator held the lease
# in between, it may have changed the round, so the old holder must step down.
_TENURE = """
local function tenure_start(holder)
  local tenure = redis.call('GET', KEYS[3])
  if tenure then
    local start, who = string.match(tenure, '^(%d+)|(.*)$')
    if who == holder then return tonumber(start) end
  end
  return 0
end
local function take(holder, ttl)
  local token = redis.call('INCR', KEYS[2])
  if tenure_start(holder) == 0 then redis.call('SET', KEYS[3], token .. '|' .. holder) end
  redis.call('SET', KEYS[1], token .. '|' .. holder, 'PX', ttl)
  return token
end
"""

# KEYS: lease, token counter, tenure. ARGV: holder, ttl ms. Returns the new token, 0 if
# anyone holds it (set-if-absent: holder names are unique per process, see store/lease.py).
_ACQUIRE_SCRIPT = (
    _TENURE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
return take(ARGV[1], ARGV[2])
"""
)

# KEYS: lease, token counter, tenure. ARGV: fence, holder, ttl ms. Extends our lease (ours:
# our fence, or our unique holder name with a newer token taken by a late renewal of ours),
# takes it again if it expired meanwhile (new token), or returns {0, 0} if another holder
# has it. Returns {token, first token of our tenure}.
_RENEW_SCRIPT = (
    _TENURE
    + """
local value = redis.call('GET', KEYS[1])
local suffix = '|' .. ARGV[2]
if value == ARGV[1] or (value and string.sub(value, -#suffix) == suffix) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {tonumber(string.match(value, '^(%d+)|')), tenure_start(ARGV[2])}
end
if value then return {0, 0} end
local token = take(ARGV[2], ARGV[3])
return {token, tenure_start(ARGV[2])}
"""
)

_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease. ARGV: fence, then commands as (argument count, command, arguments…).
# Runs them all or none (when the fence does not match).
_BATCH_SCRIPT = (
    _FENCE
    + """
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 0
"""
)

# KEYS: lease, sum_dict, accepted. ARGV: fence, pk, ephemeral pk, digest.
_SUM_SCRIPT = (
    _FENCE
    + """
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[3], ARGV[2], ARGV[4]) end
return 1
"""
)

# KEYS: lease, sum_dict, update_participants, unfolded, staged model, model key, accepted,
# seed hashes… ARGV: fence, update pk, keep the model (1/0), digest, then sum pk / sealed seed
# pairs. Every check runs before the first write. The model was SET to the staged key (with a
# TTL, so a fenced-off attempt leaves nothing for long) in the same round trip; it is renamed
# into place (O(1), no copy: 2-3x faster than passing megabytes through ARGV) only if every
# check passes.
_UPDATE_SCRIPT = (
    _FENCE
    + """
local n = (#ARGV - 4) / 2
local function refuse(code)
  redis.call('DEL', KEYS[5])
  return code
end
if redis.call('HLEN', KEYS[2]) ~= n then return refuse(-1) end
for i = 1, n do
  if redis.call('HEXISTS', KEYS[2], ARGV[3 + 2 * i]) == 0 then return refuse(-2) end
end
if redis.call('SISMEMBER', KEYS[3], ARGV[2]) == 1 then return refuse(-3) end
redis.call('SADD', KEYS[3], ARGV[2])
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[4], ARGV[2])
  redis.call('RENAME', KEYS[5], KEYS[6])
  redis.call('PERSIST', KEYS[6])
end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[7], ARGV[2], ARGV[4]) end
for i = 1, n do
  redis.call('HSET', KEYS[7 + i], ARGV[2], ARGV[4 + 2 * i])
end
return 0
"""
)

# KEYS: lease, sum_dict, mask_submitted, mask_dict, accepted. ARGV: fence, pk, mask, digest.
_MASK_SCRIPT = (
    _FENCE
    + """
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return -1 end
if redis.call('SADD', KEYS[3], ARGV[2]) == 0 then return -2 end
redis.call('ZINCRBY', KEYS[4], 1, ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[5], ARGV[2], ARGV[4]) end
return 0
"""
)

# The chunk assembler's rules (xaynet/core/message/assembler.py) over Redis, atomically.
# KEYS: lease, LRU index (zset group → last touch, Redis TIME in µs), byte counter, this
# group's hash (expires 2 TTLs after its last chunk), the accepted groups (hash group → SHA-1
# of the accepted message's last chunk: only that chunk is answered `done`; any other chunk
# with the same message id is buffered like a new one), charged bytes per group (hash), the
# groups holding one chunk (zset, evicted first: see the assembler's docstring).
# ARGV: fence, group name, chunk id, last (0/1), data, (unused: the caller's clock), max total
# bytes, max groups, max message bytes, ttl ms, group key prefix, per-chunk overhead. A
# group's `size` is its data (the message limit), its `cost` what the budget is charged
# (data + overhead per chunk; a hash without `cost` costs its `size`).
# Returns {status, payload or detail, evicted}.
_CHUNK_SCRIPT = (
    _FENCE
    + """
local group, id, is_last, data = ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5]
local max_total, max_groups = tonumber(ARGV[7]), tonumber(ARGV[8])
local max_message, ttl, prefix = tonumber(ARGV[9]), tonumber(ARGV[10]) * 1000, ARGV[11]
local charge = #data + tonumber(ARGV[12] or '0')
local clock = redis.call('TIME')  -- Redis's clock, not a coordinator's: one for all replicas
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])  -- microseconds (ARGV[6] unused)
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
local function charged(name, hash)  -- what a group was charged (older hashes: their size)
  local cost = redis.call('HGET', KEYS[6], name)
  if cost then return tonumber(cost) end
  local held = redis.call('HMGET', hash, 'cost', 'size')
  return tonumber(held[1] or held[2] or '0')
end
local function drop(name, hash)  -- never below 0: a group cleared with the round is not freed twice
  local freed = charged(name, hash)
  redis.call('DEL', hash)
  redis.call('HDEL', KEYS[6], name)
  redis.call('ZREM', KEYS[7], name)
  if redis.call('ZREM', KEYS[2], name) == 1 then total = math.max(0, total - freed) end
end
if is_last and redis.call('HGET', KEYS[5], group) == redis.sha1hex(data) then
  drop(group, KEYS[4])  -- the earlier chunks of a whole re-send of the accepted message
  redis.call('SET', KEYS[3], total)
  return {'done', '', 0}
end
if not redis.call('ZSCORE', KEYS[2], group) then
  redis.call('DEL', KEYS[4])  -- left outside the index by a put racing the round's clear: stale
end
local function field(name, default)
  local value = redis.call('HGET', KEYS[4], name)
  if value then return tonumber(value) end
  return default
end
local function state()
  local last = field('last', -1)
  if last < 0 then return {'buffered', '', 0} end
  local count = field('count', 0)
  if count == last + 1 then
    local parts = {}
    for i = 0, last do parts[#parts + 1] = redis.call('HGET', KEYS[4], 'c' .. i) end
    return {'complete', table.concat(parts), 0}
  end
  if is_last then return {'missing', 'chunks of this message are missing', 0} end
  return {'buffered', '', 0}
end
local held = redis.call('HGET', KEYS[4], 'c' .. id)
if held then
  if held ~= data then return {'conflict', 'chunk ' .. id .. ' arrived twice with different data', 0} end
  redis.call('ZADD', KEYS[2], now, group)
  if redis.call('ZSCORE', KEYS[7], group) then redis.call('ZADD', KEYS[7], now, group) end
  return state()
end
local last, highest = field('last', -1), field('max', -1)
if last >= 0 and id > last then
  return {'conflict', 'chunk ' .. id .. ' comes after the last chunk ' .. last, 0}
end
if is_last and id < highest then
  return {'conflict', 'chunk ' .. id .. ' is marked last but a higher id exists', 0}
end
if is_last and last >= 0 and last ~= id then
  return {'conflict', 'two different chunks are marked last', 0}
end
local size = field('size', 0) + #data
if size > max_message then
  return {'too_large', 'the multipart message exceeds ' .. max_message .. ' bytes', 0}
end
local cost = field('cost', field('size', 0)) + charge
if cost > max_total then return {'full', 'the multipart buffer cannot hold this message now', 0} end
local is_new = redis.call('EXISTS', KEYS[4]) == 0
local evicted = 0
local function evict(name)
  drop(name, prefix .. name)
  evicted = evicted + 1
end
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, 64)) do
  if name ~= group then evict(name) end
end
local count = redis.call('ZCARD', KEYS[2])
local offset, single_offset = 0, 0  -- skipping this group itself in either index
while total + charge > max_total or (is_new and count >= max_groups) do
  local oldest = redis.call('ZRANGE', KEYS[7], single_offset, single_offset)[1]  -- 1-chunk first
  if oldest == group then
    single_offset = single_offset + 1
  else
    if not oldest then
      oldest = redis.call('ZRANGE', KEYS[2], offset, offset)[1]
      if not oldest then break end
      if oldest == group then
        offset = offset + 1
        oldest = nil
      end
    end
    if oldest then
      evict(oldest)
      count = count - 1
    end
  end
end
redis.call('HSET', KEYS[4], 'c' .. id, data, 'size', size, 'cost', cost,
  'count', field('count', 0) + 1, 'max', math.max(highest, id))
if is_last then redis.call('HSET', KEYS[4], 'last', id) end
-- a hash left outside the index (a put racing the round's clear) still goes, after 2 TTLs
redis.call('PEXPIRE', KEYS[4], math.floor(2 * ttl / 1000))
redis.call('ZADD', KEYS[2], now, group)
if field('count', 0) == 1 then redis.call('ZADD', KEYS[7], now, group)
else redis.call('ZREM', KEYS[7], group) end
redis.call('HSET', KEYS[6], group, cost)
redis.call('SET', KEYS[3], total + charge)
local result = state()
result[3] = evicted
return result
"""
)

# KEYS: lease, LRU index, byte counter, group hash, accepted groups, charged bytes per group,
# one-chunk groups.
# ARGV: fence, group name, accepted (0/1).
_RELEASE_CHUNKS_SCRIPT = (
    _FENCE
    + """
if ARGV[3] == '1' then
  local last = redis.call('HGET', KEYS[4], 'last')
  local data = last and redis.call('HGET', KEYS[4], 'c' .. last)
  if data then redis.call('HSET', KEYS[5], ARGV[2], redis.sha1hex(data)) end
end
local freed = tonumber(redis.call('HGET', KEYS[6], ARGV[2]) or '0')
if freed == 0 then
  local held = redis.call('HMGET', KEYS[4], 'cost', 'size')
  freed = tonumber(held[1] or held[2] or '0')
end
redis.call('DEL', KEYS[4])
redis.call('HDEL', KEYS[6], ARGV[2])
redis.call('ZREM', KEYS[7], ARGV[2])
if redis.call('ZREM', KEYS[2], ARGV[2]) == 1 then
  local total = tonumber(redis.call('GET', KEYS[3]) or '0')
  redis.call('SET', KEYS[3], math.max(0, total - freed))  -- never below 0 (see the chunk script)
end
return 0
"""
)

# KEYS: totals hash. ARGV: round id, then name/increment pairs. Adds once per round id (a
# coordinator that redoes the end of a round after a crash must not count it twice).
# (fenced: KEYS[1] lease, KEYS[2] totals; ARGV[1] fence, ARGV[2] round id, then pairs)
_TOTALS_SCRIPT = (
    _FENCE
    + """
local counted = tonumber(redis.call('HGET', KEYS[2], '_counted_round') or '-1')
if tonumber(ARGV[2]) > counted then
  for i = 3, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', KEYS[2], '_counted_round', ARGV[2])
end
return redis.call('HGETALL', KEYS[2])
"""
)

_UPDATE_OUTCOMES = {
    0: UpdateOutcome.ACCEPTED,
    -1: UpdateOutcome.LENGTH_MISMATCH,
    -2: UpdateOutcome.UNKNOWN_SUM_PARTICIPANT,
    -3: UpdateOutcome.DUPLICATE,
}
_MASK_OUTCOMES = {0: MaskOutcome.ACCEPTED, -1: MaskOutcome.UNKNOWN_SUM_PARTICIPANT, -2: MaskOutcome.DUPLICATE}
_STAGING_MS = 60_000  # a staged model that was never renamed into place expires
_DELETE_BATCH = 500  # keys per fenced DEL (Lua's stack bounds one call's arguments)


def _guarded(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn Redis failures into `StoreUnavailableError` and report each call's latency."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        assert isinstance(store, RedisStore)
        start = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        except ResponseError as exc:
            if FENCED in str(exc):
                raise LeaseLostError(f"this coordinator lost the round's lease: {exc}") from exc
            raise StoreUnavailableError(f"Redis at {store.safe_url} failed: {exc}") from exc
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
        password: str | None = None,  # a password in the URL wins (redis-py's from_url)
    ) -> None:
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=10,
            password=password,
        )
        self.safe_url = _without_password(url)
        self.prefix = f"xaynet:{namespace}:"
        self.observe = observe or (lambda _op, _seconds: None)
        self.fence = ""
        register = self._redis.register_script
        self._acquire_script = register(_ACQUIRE_SCRIPT)
        self._renew_script = register(_RENEW_SCRIPT)
        self._release_script = register(_RELEASE_SCRIPT)
        self._batch_script = register(_BATCH_SCRIPT)
        self._sum_script = register(_SUM_SCRIPT)
        self._update_script = register(_UPDATE_SCRIPT)
        self._mask_script = register(_MASK_SCRIPT)
        self._chunk_script = register(_CHUNK_SCRIPT)
        self._release_chunks_script = register(_RELEASE_CHUNKS_SCRIPT)
        self._totals_script = self._redis.register_script(_TOTALS_SCRIPT)

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _seed_key(self, sum_pk: bytes) -> str:
        return self.prefix + "seeds:" + sum_pk.hex()

    def _model_key(self, update_pk: bytes) -> str:
        return self.prefix + "models:" + update_pk.hex()

    async def _fenced(self, *commands: tuple[Any, ...]) -> None:
        """Run plain write commands atomically, only while our fence is the lease."""
        args: list[Any] = [self.fence]
        for command in commands:
            args += [len(command), *command]
        await self._batch_script(keys=[self._key("lease")], args=args)

    async def _fenced_delete(self, keys: list[str]) -> None:
        for start in range(0, max(1, len(keys)), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            await self._fenced(("DEL", *batch) if batch else ("EXISTS", self._key("lease")))

    # -- lease -------------------------------------------------------------------------------
    @_guarded
    async def acquire_lease(self, holder: str, ttl_ms: int) -> int:
        keys = [self._key("lease"), self._key("lease_token"), self._key("lease_tenure")]
        return int(await self._acquire_script(keys=keys, args=[holder, ttl_ms]))

    @_guarded
    async def renew_lease(self, fence: str, holder: str, ttl_ms: int) -> tuple[int, int]:
        keys = [self._key("lease"), self._key("lease_token"), self._key("lease_tenure")]
        token, since = await self._renew_script(keys=keys, args=[fence, holder, ttl_ms])
        return int(token), int(since)

    @_guarded
    async def release_lease(self, fence: str) -> None:
        await self._release_script(keys=[self._key("lease")], args=[fence])

    @_guarded
    async def lease_holder(self) -> tuple[str, int] | None:
        raw = await self._redis.get(self._key("lease"))
        if raw is None:
            return None
        token, _, holder = raw.decode().partition("|")
        return holder, int(token)

    # -- multipart chunks --------------------------------------------------------------------
    def _chunk_keys(self, group: ChunkGroup) -> list[str]:
        return [
            self._key("lease"),
            self._key("chunk_index"),
            self._key("chunk_bytes"),
            self._key("chunk:" + group.name),
            self._key("chunk_done"),
            self._key("chunk_cost"),
            self._key("chunk_single"),
        ]

    @_guarded
    async def put_chunk(
        self, group: ChunkGroup, chunk: ChunkPayload, limits: ChunkLimits, now: float
    ) -> ChunkPut:
        args = [
            self.fence,
            group.name,
            chunk.chunk_id,
            int(chunk.last),
            chunk.data,
            int(now * 1000),
            limits.max_total_bytes,
            limits.max_groups,
            limits.max_message_bytes,
            int(limits.ttl_seconds * 1000),
            self._key("chunk:"),
            CHUNK_OVERHEAD,
        ]
        status, payload, evicted = await self._chunk_script(keys=self._chunk_keys(group), args=args)
        kind = ChunkStatus(status.decode())
        if kind is ChunkStatus.COMPLETE:
            return ChunkPut(kind, bytes(payload), evicted=int(evicted))
        return ChunkPut(kind, detail=payload.decode(), evicted=int(evicted))

    @_guarded
    async def release_chunks(self, group: ChunkGroup, accepted: bool) -> None:
        args = [self.fence, group.name, int(accepted)]
        await self._release_chunks_script(keys=self._chunk_keys(group), args=args)

    @_guarded
    async def chunk_usage(self) -> tuple[int, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self._key("chunk_index"))
            pipe.get(self._key("chunk_bytes"))
            groups, size = await pipe.execute()
        return int(groups), int(size or 0)

    @_guarded
    async def chunked_message_accepted(self, group: ChunkGroup, last_chunk: bytes) -> bool:
        stored = await self._redis.hget(self._key("chunk_done"), group.name)
        return stored is not None and bytes(stored) == chunk_digest(last_chunk).hex().encode()

    @_guarded
    async def accepted_digest(self, pk: bytes) -> bytes | None:
        raw = await self._redis.hget(self._key("accepted"), pk)
        return None if raw is None else bytes(raw)

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
        await self._fenced(("SET", self._key("round"), json.dumps(data)))

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
                "accepted",
                "chunk_index",
                "chunk_bytes",
                "chunk_accepted",  # a set in the first build with stored chunks; now chunk_done
                "chunk_done",
                "chunk_cost",
                "chunk_single",
            )
        ]
        for pattern in ("seeds:*", "models:*", "staging:*", "chunk:*"):
            async for key in self._redis.scan_iter(match=self._key(pattern), count=1000):
                keys.append(key.decode() if isinstance(key, bytes) else key)
        return keys

    @_guarded
    async def clear_round_data(self) -> None:
        await self._fenced_delete(await self._round_keys())

    @_guarded
    async def wipe(self) -> None:
        keys = await self._round_keys() + [self._key("round"), self._key("model"), self._key("totals")]
        await self._fenced_delete(keys)

    # -- sum ---------------------------------------------------------------------------------
    @_guarded
    async def add_sum_participant(self, pk: bytes, ephm_pk: bytes, digest: bytes = b"") -> bool:
        keys = [self._key("lease"), self._key("sum_dict"), self._key("accepted")]
        return bool(await self._sum_script(keys=keys, args=[self.fence, pk, ephm_pk, digest]))

    @_guarded
    async def sum_dict(self) -> dict[bytes, bytes]:
        raw: dict[bytes, bytes] = await self._redis.hgetall(self._key("sum_dict"))
        return dict(raw)

    # -- update ------------------------------------------------------------------------------
    @_guarded
    async def add_update(
        self, pk: bytes, local_seed_dict: dict[bytes, bytes], masked_model: bytes, digest: bytes = b""
    ) -> UpdateOutcome:
        sum_pks = list(local_seed_dict)
        staging = self._key("staging:" + secrets.token_hex(16))
        keys = [self._key(k) for k in ("lease", "sum_dict", "update_participants", "unfolded")]
        keys += [staging, self._model_key(pk), self._key("accepted")]
        keys += [self._seed_key(sum_pk) for sum_pk in sum_pks]
        args: list[Any] = [self.fence, pk, int(bool(masked_model)), digest]
        for sum_pk in sum_pks:
            args += [sum_pk, local_seed_dict[sum_pk]]
        if not masked_model:
            return _UPDATE_OUTCOMES[int(await self._update_script(keys=keys, args=args))]
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(staging, masked_model, px=_STAGING_MS)
            await self._update_script(keys=keys, args=args, client=pipe)
            pipe.delete(staging)  # gone already if accepted (renamed); fenced off: not left for 60 s
            _, result, _ = await pipe.execute(raise_on_error=False)
        if isinstance(result, Exception):
            raise result  # unchanged, so `_guarded` still sees a fencing refusal as one
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
        commands: list[tuple[Any, ...]] = [
            ("SET", self._key("aggregate"), struct.pack("<Q", snapshot.nb_models) + snapshot.body)
        ]
        if folded:
            commands.append(("SREM", self._key("unfolded"), *folded))
            commands.append(("DEL", *(self._model_key(pk) for pk in folded)))
        await self._fenced(*commands)

    @_guarded
    async def aggregate_snapshot(self) -> AggregateSnapshot | None:
        raw = await self._redis.get(self._key("aggregate"))
        if raw is None:
            return None
        (count,) = struct.unpack_from("<Q", raw)
        return AggregateSnapshot(count, bytes(raw[8:]))

    # -- sum2 --------------------------------------------------------------------------------
    @_guarded
    async def add_mask(self, pk: bytes, mask: bytes, digest: bytes = b"") -> MaskOutcome:
        keys = [self._key(k) for k in ("lease", "sum_dict", "mask_submitted", "mask_dict", "accepted")]
        result = await self._mask_script(keys=keys, args=[self.fence, pk, mask, digest])
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
        key = self._key("model")
        await self._fenced(
            ("HSET", key, "round_id", model.round_id, "body", model.body, "checksum", model.checksum)
        )

    @_guarded
    async def load_model(self) -> StoredModel | None:
        raw = await self._redis.hgetall(self._key("model"))
        if not raw:
            return None
        return StoredModel(int(raw[b"round_id"]), bytes(raw[b"body"]), raw[b"checksum"].decode())

    # -- totals over all rounds --------------------------------------------------------------
    @_guarded
    async def add_round_totals(self, round_id: int, totals: dict[str, int]) -> dict[str, int]:
        args: list[Any] = [self.fence, round_id]
        for name, value in totals.items():
            args += [name, value]
        raw = await self._totals_script(keys=[self._key("lease"), self._key("totals")], args=args)
        return _totals(dict(zip(raw[::2], raw[1::2], strict=True)))

    @_guarded
    async def round_totals(self) -> dict[str, int]:
        return _totals(await self._redis.hgetall(self._key("totals")))

    async def durability(self) -> str | None:
        """`accepted` means fsynced only with appendonly yes + appendfsync always."""
        try:
            config = await self._redis.config_get("append*")
        except (RedisError, OSError):
            return None  # CONFIG is often disabled on managed Redis: cannot tell
        appendonly = _text(config.get("appendonly", b""))
        appendfsync = _text(config.get("appendfsync", b""))
        if appendonly != "yes":
            return "Redis runs without its append-only file: a Redis restart loses the round"
        if appendfsync != "always":
            return (
                f"Redis fsyncs its append-only file '{appendfsync}', not 'always': a crash of the "
                "Redis host can lose messages answered 'accepted' in the last second"
            )
        return None

    # -- models waiting for the S3 archive (`archive:queue` zset by round, one hash per model;
    # not in _round_keys: they survive wipes, restarts and rounds until uploaded) -------------
    def _archive_item_key(self, key: str) -> str:
        return self._key("archive:item:" + key)

    @_guarded
    async def queue_archive(self, item: ArchiveItem) -> None:
        await self._fenced(
            # scored by when it was queued, not by round id: ids start again at 1 when a round
            # is wiped (`[restore] enable = false`), and the oldest must stay first
            ("ZADD", self._key("archive:queue"), "NX", time.time(), item.key),
            (
                "HSET",
                self._archive_item_key(item.key),
                "round_id",
                item.round_id,
                "body",
                item.body,
                "metadata",
                json.dumps(item.metadata),
            ),
        )

    @_guarded
    async def archive_queue(self) -> list[str]:
        return [raw.decode() for raw in await self._redis.zrange(self._key("archive:queue"), 0, -1)]

    @_guarded
    async def queued_model(self, key: str) -> ArchiveItem | None:
        raw = await self._redis.hgetall(self._archive_item_key(key))
        if not raw:
            return None
        return ArchiveItem(key, int(raw[b"round_id"]), bytes(raw[b"body"]), json.loads(raw[b"metadata"]))

    @_guarded
    async def archive_done(self, key: str, record: dict[str, Any] | None = None) -> None:
        commands: list[tuple[Any, ...]] = [
            ("ZREM", self._key("archive:queue"), key),
            ("DEL", self._archive_item_key(key)),
        ]
        if record is not None:
            commands.append(("SET", self._key("archive:last"), json.dumps(record)))
        await self._fenced(*commands)

    @_guarded
    async def last_archived(self) -> dict[str, Any] | None:
        raw = await self._redis.get(self._key("archive:last"))
        return None if raw is None else dict(json.loads(raw))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _totals(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {name.decode(): int(value) for name, value in raw.items() if not name.startswith(b"_")}


def _without_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':***@' if user else ':***@'}{host}"
