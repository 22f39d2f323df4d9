"""kopf handlers for FederatedRound: thin, each delegating to one module.

create/resume → validate, then provision the children; update → roll out safe spec changes,
refuse unsafe ones with a condition; daemon → follow the coordinator (follow.py); delete →
remove the round's data from an external Redis (the finalizer); validate → admission.
"""

from __future__ import annotations

import os
from typing import Any

import kopf

from xaynet.coordinator.store.base import StoreUnavailableError
from xaynet.coordinator.store.redis_store import RedisStore
from xaynet.operator import kube
from xaynet.operator.children.common import GROUP, PLURAL, VERSION, redis_namespace
from xaynet.operator.follow import follow
from xaynet.operator.provision import provision
from xaynet.operator.spec import UNSAFE_FIELDS, FederatedRoundSpec, InvalidSpecError, parse_spec
from xaynet.operator.status import set_condition

RETRY_SECONDS = float(os.environ.get("XAYNET_OPERATOR_RETRY_SECONDS", "10"))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "xaynet.dev/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="xaynet.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="xaynet.dev", key="last-handled"
    )
    settings.posting.level = 20  # INFO and above become Kubernetes events
    settings.watching.server_timeout = 300
    kube.load_config()


async def _invalid(body: kopf.Body, problems: list[str]) -> None:
    conditions = set_condition(
        (body.get("status") or {}).get("conditions"),
        "Failed",
        True,
        "InvalidSpec",
        "; ".join(problems),
        body["metadata"].get("generation"),
    )
    await kube.patch_status(
        body["metadata"]["namespace"], body["metadata"]["name"], {"phase": "Failed", "conditions": conditions}
    )
    kopf.warn(body, reason="InvalidSpec", message="; ".join(problems))


async def _parse_or_fail(body: kopf.Body) -> FederatedRoundSpec:
    try:
        return parse_spec(dict(body.get("spec") or {}))
    except InvalidSpecError as error:
        await _invalid(body, error.problems)
        raise kopf.PermanentError(f"invalid spec: {error}") from None


async def _provisioned(body: kopf.Body, spec: FederatedRoundSpec, logger: kopf.Logger) -> None:
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    conditions = status.get("conditions")
    if status.get("phase") not in ("Running", "Succeeded"):
        await kube.patch_status(
            body["metadata"]["namespace"], body["metadata"]["name"], {"phase": "Provisioning"}
        )
    await provision(body, spec, logger)
    redis_message = (
        "managed Redis provisioned" if spec.redis.mode == "Managed" else f"external Redis {spec.redis.url}"
    )
    conditions = set_condition(conditions, "RedisReady", True, spec.redis.mode, redis_message, generation)
    conditions = set_condition(conditions, "Failed", False, "SpecValid", "the spec is valid", generation)
    if spec.suspend:
        conditions = set_condition(
            conditions,
            "Suspended",
            True,
            "Suspended",
            "spec.suspend: the coordinator is scaled to 0",
            generation,
        )
    else:
        conditions = set_condition(conditions, "Suspended", False, "Running", "not suspended", generation)
    phase = status.get("phase") if status.get("phase") in ("Running", "Succeeded") else "Provisioning"
    await kube.patch_status(
        body["metadata"]["namespace"],
        body["metadata"]["name"],
        {
            "phase": phase,
            "conditions": conditions,
            "appliedSpec": dict(body.get("spec") or {}),
            "observedGeneration": generation,
        },
    )


@kopf.on.create(GROUP, VERSION, PLURAL, backoff=RETRY_SECONDS)
@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=RETRY_SECONDS)
async def create(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    spec = await _parse_or_fail(body)
    await _provisioned(body, spec, logger)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec", backoff=RETRY_SECONDS)
async def update(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    spec = await _parse_or_fail(body)
    status = body.get("status") or {}
    applied = status.get("appliedSpec") or {}
    new = dict(body.get("spec") or {})
    changed = [
        f"spec.{field}"
        for field in UNSAFE_FIELDS
        if applied and _normal(applied.get(field)) != _normal(new.get(field))
    ]
    generation = body["metadata"].get("generation")
    if changed:
        message = (
            f"{', '.join(changed)} cannot change while the round exists (its coordinator state depends on "
            "them); create a new FederatedRound instead"
        )
        conditions = set_condition(
            status.get("conditions"), "SpecChangeRefused", True, "UnsafeChange", message, generation
        )
        await kube.patch_status(
            body["metadata"]["namespace"], body["metadata"]["name"], {"conditions": conditions}
        )
        kopf.warn(body, reason="SpecChangeRefused", message=message)
        return
    await _provisioned(body, spec, logger)
    conditions = set_condition(
        (body.get("status") or {}).get("conditions"),
        "SpecChangeRefused",
        False,
        "Applied",
        "the latest spec is rolled out",
        generation,
    )
    await kube.patch_status(
        body["metadata"]["namespace"], body["metadata"]["name"], {"conditions": conditions}
    )


def _normal(value: Any) -> Any:
    """Treat an absent section like its defaults: {} and None compare equal."""
    return value or None


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10, initial_delay=1)
async def follow_coordinator(
    body: kopf.Body, logger: kopf.Logger, stopped: kopf.DaemonStopped, **_: Any
) -> None:
    await follow(body, logger, stopped)


@kopf.on.delete(GROUP, VERSION, PLURAL, backoff=RETRY_SECONDS)
async def cleanup(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
    """Remove the round's keys from an external Redis; managed children go with their owner."""
    spec = body.get("spec") or {}
    redis = spec.get("redis") or {}
    if redis.get("mode") != "External" or not redis.get("url"):
        return
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    url = str(redis["url"])
    reference = redis.get("passwordSecretRef")
    if reference:
        password = await kube.read_secret_value(
            namespace, reference["name"], reference.get("key", "password")
        )
        if password:
            scheme, _separator, rest = url.partition("://")
            url = f"{scheme}://:{password}@{rest}"

    store = RedisStore(url, redis_namespace(namespace, name))
    try:
        await store.wipe()
    except StoreUnavailableError as error:
        raise kopf.TemporaryError(
            f"cannot remove the round's data from Redis: {error}", delay=RETRY_SECONDS
        ) from None
    finally:
        await store.close()
    logger.info(f"removed the round's keys ({redis_namespace(namespace, name)}) from the external Redis")


def admission(spec: kopf.Spec, **_: Any) -> None:
    """Refuse invalid rounds at `kubectl apply` (when the admission webhook is enabled)."""
    try:
        parse_spec(dict(spec))
    except InvalidSpecError as error:
        raise kopf.AdmissionError(str(error), code=422) from None


def enable_admission(port: int) -> None:
    """Serve `admission` as a validating webhook (kopf self-signs and registers it)."""
    kopf.on.validate(GROUP, VERSION, PLURAL, id="validate-federatedround")(admission)

    @kopf.on.startup()
    def webhook(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.admission.server = kopf.WebhookServer(addr="0.0.0.0", port=port)
        settings.admission.managed = "federatedrounds.xaynet.dev"
