"""The S3 model archive (coordinator/archive.py) against a real S3-compatible server over HTTP.

What a user checks: one object per model under the original's name (`<round>_<hex seed>` in
`global-models`) holding exactly the `/model` bytes, with the checksum and the round's
metadata; an existing object is never overwritten; wrong credentials are refused with a
clear error and the model stays queued; an endpoint that is down delays uploads, loses none.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.coordinator.stores import store_clients  # noqa: F401 - the `stores` fixture
from tests.s3server import S3Server, s3_server
from xaynet.coordinator.archive import ModelArchive
from xaynet.coordinator.settings import S3Settings, SettingsError, load_settings
from xaynet.coordinator.store.base import Store
from xaynet.coordinator.store.memory import MemoryStore
from xaynet.core.mask.model import GlobalModel
from xaynet.core.s3 import ModelMetadata, object_key

DEADLINE = 60.0


@pytest.fixture
def server() -> Iterator[S3Server]:
    with s3_server() as running:
        yield running


def _settings(server: S3Server, access_key: str | None = None) -> S3Settings:
    return S3Settings(
        access_key=access_key or server.access_key,
        secret_access_key=server.secret_key,
        region=["minio", server.url],
    )


def _model(round_id: int) -> bytes:
    numerators = np.arange(round_id, round_id + 5, dtype=np.int64)
    return GlobalModel.from_fractions(numerators, 3).to_bincode()


async def _store() -> MemoryStore:
    store = MemoryStore()
    token = await store.acquire_lease("test", 600_000)
    store.fence = f"{token}|test"
    return store


@contextlib.asynccontextmanager
async def _running(archive: ModelArchive) -> AsyncIterator[ModelArchive]:
    task = asyncio.create_task(archive.run())
    try:
        yield archive
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(predicate: object, what: str) -> None:
    assert callable(predicate)
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not await asyncio.to_thread(predicate):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _queue(archive: ModelArchive, round_id: int, seed: bytes, body: bytes) -> None:
    await archive.enqueue(round_id, seed, body, mask_config="Prime/F32/B0/M3", model_length=5, updates=3)


async def test_three_models_become_three_objects_named_like_the_original(server: S3Server) -> None:
    store = await _store()
    archive = ModelArchive(_settings(server), store)
    seeds = {round_id: secrets.token_bytes(32) for round_id in (1, 2, 3)}
    async with _running(archive):
        for round_id, seed in seeds.items():
            await _queue(archive, round_id, seed, _model(round_id))
        await _until(lambda: len(server.objects()) == 3, "three objects")
        await _until(lambda: archive.pending == 0, "an empty queue")

    objects = server.objects()
    assert objects == {f"{r}_{seed.hex()}": _model(r) for r, seed in seeds.items()}
    assert await store.archive_queue() == []
    head = server.client().head_object(Bucket="global-models", Key=object_key(2, seeds[2]))
    metadata = ModelMetadata.from_s3(head["Metadata"])
    assert metadata == ModelMetadata(
        2, seeds[2], "sha256:" + hashlib.sha256(_model(2)).hexdigest(), "Prime/F32/B0/M3", 5, 3
    )
    assert archive.status()["latest"] == {
        "uri": f"s3://global-models/3_{seeds[3].hex()}",
        "round_id": 3,
        "checksum": "sha256:" + hashlib.sha256(_model(3)).hexdigest(),
        "size": len(_model(3)),
    }


async def test_an_existing_object_is_never_overwritten(server: S3Server) -> None:
    client = server.client()
    client.create_bucket(Bucket="global-models", CreateBucketConfiguration={"LocationConstraint": "minio"})
    ours, theirs = secrets.token_bytes(32), secrets.token_bytes(32)
    client.put_object(Bucket="global-models", Key=object_key(1, theirs), Body=b"someone else's object")
    client.put_object(Bucket="global-models", Key=object_key(2, ours), Body=_model(2))  # a crash after upload

    store = await _store()
    archive = ModelArchive(_settings(server), store, retry_max_seconds=0.5)
    async with _running(archive):
        await _queue(archive, 1, theirs, _model(1))
        await _queue(archive, 2, ours, _model(2))
        await _until(lambda: archive.last_error is not None and archive.pending == 1, "the conflict report")

    assert "already exists with other content; not overwritten" in (archive.last_error or "")
    objects = server.objects()
    assert objects[object_key(1, theirs)] == b"someone else's object"  # untouched
    assert objects[object_key(2, ours)] == _model(2)
    assert await store.archive_queue() == [object_key(1, theirs)]


async def test_wrong_credentials_are_refused_and_the_model_stays_queued(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with s3_server(with_auth=True) as server:
        store = await _store()
        archive = ModelArchive(
            _settings(server, access_key="AKIAWRONGWRONGWRONG1"), store, retry_max_seconds=0.5
        )
        seed = secrets.token_bytes(32)
        with caplog.at_level(logging.WARNING, logger="xaynet.coordinator.archive"):
            async with _running(archive):
                await _queue(archive, 7, seed, _model(7))
                await _until(lambda: archive.last_error is not None, "the refusal")
                await asyncio.sleep(0)  # let the warning be logged
        assert archive.last_error == (
            f"{server.url} refused the credentials (403): check the S3 access key and secret key"
        )
        warnings = [r.getMessage() for r in caplog.records if "refused the credentials" in r.getMessage()]
        assert len(warnings) == 1, warnings  # one line per problem, not one per retry
        assert "1 global model(s) kept in the store" in warnings[0]
        assert await store.archive_queue() == [object_key(7, seed)]
        assert server.objects() == {}  # (read with the right keys)

        # with the right keys the same queue drains
        fixed = ModelArchive(_settings(server), store)
        async with _running(fixed):
            await _until(lambda: server.objects() == {object_key(7, seed): _model(7)}, "the upload")


async def test_an_endpoint_down_for_a_while_loses_nothing() -> None:
    with s3_server(start=False) as server:
        store = await _store()
        archive = ModelArchive(_settings(server), store, retry_max_seconds=1.0)
        seeds = [secrets.token_bytes(32) for _ in range(3)]
        async with _running(archive):
            for round_id, seed in enumerate(seeds, 1):
                await _queue(archive, round_id, seed, _model(round_id))
            await _until(lambda: archive.last_error is not None, "the first failed upload")
            assert "cannot reach the S3 endpoint" in (archive.last_error or "")
            assert archive.pending == 3
            server.start()
            await _until(lambda: len(server.objects()) == 3, "every queued model uploaded")
            await _until(lambda: archive.pending == 0 and archive.last_error is None, "the recovery")
        assert server.objects() == {object_key(r, s): _model(r) for r, s in enumerate(seeds, 1)}
        assert await store.archive_queue() == []


async def test_a_long_outage_keeps_the_newest_max_queued_models(
    caplog: pytest.LogCaptureFixture, stores: Callable[[], Store]
) -> None:
    """S3 down for 4 rounds with `max_queued = 2` (memory store, real Redis): the 2 oldest are
    dropped (said, counted), the store never holds more than 2, and the newest 2 are archived
    once S3 is back."""
    with s3_server(start=False) as server:
        store = stores()
        token = await store.acquire_lease("test", 600_000)
        store.fence = f"{token}|test"
        settings = _settings(server).model_copy(update={"max_queued": 2})
        archive = ModelArchive(settings, store, retry_max_seconds=1.0)
        seeds = [secrets.token_bytes(32) for _ in range(4)]
        async with _running(archive):
            for round_id, seed in enumerate(seeds, 1):
                await _queue(archive, round_id, seed, _model(round_id))
                assert len(await store.archive_queue()) == min(round_id, 2)
            assert archive.status()["dropped"] == 2
            assert sum("max_queued = 2" in r.getMessage() for r in caplog.records) == 2
            server.start()
            await _until(lambda: len(server.objects()) == 2, "the queued models uploaded")
            await _until(lambda: archive.pending == 0, "an empty queue")
        assert server.objects() == {object_key(r, seeds[r - 1]): _model(r) for r in (3, 4)}


async def test_the_oldest_queued_model_goes_first_even_when_round_ids_start_again(
    stores: Callable[[], Store],
) -> None:
    """Without `[restore]` a restarted coordinator counts rounds from 1 again; the model it
    just made must not be the one dropped because its id is smaller."""
    with s3_server(start=False) as server:
        store = stores()
        token = await store.acquire_lease("test", 600_000)
        store.fence = f"{token}|test"
        archive = ModelArchive(_settings(server).model_copy(update={"max_queued": 2}), store)
        seeds = {round_id: secrets.token_bytes(32) for round_id in (50, 51, 1)}
        for round_id, seed in seeds.items():  # queued in this order: 50, 51, then 1 after a restart
            await _queue(archive, round_id, seed, _model(round_id))
        assert await store.archive_queue() == [object_key(51, seeds[51]), object_key(1, seeds[1])]
        assert archive.status()["dropped"] == 1


def test_bad_s3_settings_stop_the_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[model]\nlength = 4\n[s3]\nregion = ["minio", "minio:9000"]\n'
        '[s3.buckets]\nglobal_models = "Models"\n'
    )
    with pytest.raises(SettingsError) as refused:
        load_settings(config, environ={})
    assert str(refused.value).splitlines()[1:] == [
        "  s3.region: the endpoint 'minio:9000' must be an http:// or https:// URL",
        "  s3.buckets.global_models: 'Models' is not a valid bucket name: 3-63 lower-case letters, digits, "
        "'-' and '.', starting and ending with a letter or digit, not an IP address",
    ]
    # the original's environment form, "name endpoint", is the same as the file's list
    config.write_text("[model]\nlength = 4\n[s3]\n")
    settings = load_settings(config, environ={"XAYNET_S3__REGION": "minio http://minio:9000"})
    assert settings.s3 is not None
    assert not any("[s3]" in warning for warning in settings.warnings())  # implemented, not reported
    store = MemoryStore()
    archive = ModelArchive(settings.s3, store)
    assert (archive.region, archive.endpoint, archive.bucket) == (
        "minio",
        "http://minio:9000",
        "global-models",
    )


async def test_a_server_without_conditional_writes_gets_check_then_put(
    server: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Older MinIO answers 501 to If-None-Match; the archive still never overwrites."""
    from botocore.exceptions import ClientError

    store = await _store()
    archive = ModelArchive(_settings(server), store, retry_max_seconds=0.5)
    real_put = archive._client.put_object

    def old_minio_put(**request: object) -> object:
        if "IfNoneMatch" in request:
            raise ClientError({"Error": {"Code": "NotImplemented", "Message": "A header"}}, "PutObject")
        return real_put(**request)

    archive._client.put_object = old_minio_put
    taken, fresh = secrets.token_bytes(32), secrets.token_bytes(32)
    client = server.client()
    client.create_bucket(Bucket="global-models", CreateBucketConfiguration={"LocationConstraint": "minio"})
    client.put_object(Bucket="global-models", Key=object_key(1, taken), Body=b"not ours")
    with caplog.at_level(logging.WARNING, logger="xaynet.coordinator.archive"):
        async with _running(archive):
            await _queue(archive, 1, taken, _model(1))
            await _queue(archive, 2, fresh, _model(2))
            await _until(lambda: object_key(2, fresh) in server.objects(), "the unconditional upload")
            await _until(lambda: archive.pending == 1, "the conflict kept queued")
    assert archive.conditional_put is False
    assert sum("does not support conditional writes" in r.getMessage() for r in caplog.records) == 1
    assert server.objects() == {object_key(1, taken): b"not ours", object_key(2, fresh): _model(2)}
    assert await store.archive_queue() == [object_key(1, taken)]
