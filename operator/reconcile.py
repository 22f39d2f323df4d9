"""One level-triggered reconcile of a FederatedRound: observe → decide → apply → one status patch.

Every trigger (a watch event, the periodic resync, a restart) calls `reconcile`, and it is the
only code that writes a round's status. Calls for one round never overlap (a lock per round)
and each starts from the round as the API server has it, so no stale snapshot is ever written.

Decisions, in order:
- an invalid spec: `Failed` (InvalidSpec); the children stay as they are;
- the unsafe fields (`modelLength`, `mask`, `redis`) come from `status.appliedSpec` once one
  exists, whatever the API server let through, restarts included: a change is refused with
  `SpecChangeRefused` while every safe field still rolls out;
- `Succeeded` is terminal: its coordinator stays at 0 replicas across restarts;
- `suspend: true`: 0 replicas and `Suspended=True`;
- `completedRounds` is the coordinator's own persisted counter (`rounds_completed` of its
  /status), and the round is `Succeeded` when the coordinator says it is `finished` (it takes
  no message after the N-th model, with or without the operator).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from xaynet.operator import kube, metrics
from xaynet.operator.children.common import coordinator_name, redis_name
from xaynet.operator.finalizer import FINALIZER, has_finalizer, needs_finalizer
from xaynet.operator.provision import Provisioned, coordinator_url, provision
from xaynet.operator.publish import publish
from xaynet.operator.spec import UNSAFE_FIELDS, FederatedRoundSpec, InvalidSpecError, parse_spec
from xaynet.operator.status import Condition, conditions, mirror, now

logger = logging.getLogger("xaynet.operator")

_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
_last_error: dict[tuple[str, str], str] = {}


@dataclass
class Coordinator:
    """What the round's coordinator says about itself (None: it did not answer)."""

    url: str
    status: dict[str, Any] | None = None
    error: str | None = None
    ready: bool | None = None  # /readyz: True 200, False 503 (its store is unreachable)
    ready_detail: str = ""


@dataclass
class Decision:
    phase: str
    spec: FederatedRoundSpec | None = None
    applied: dict[str, Any] | None = None  # status.appliedSpec to write
    refused: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _normal(value: Any) -> Any:
    """Treat an absent section like its defaults: {} and None compare equal."""
    return value or None


def decide_spec(raw: dict[str, Any], applied: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """The spec to run: the unsafe fields from the applied spec, the rest from `raw`; and the
    unsafe fields whose change is refused."""
    if applied is None:
        return dict(raw), []
    refused = [f"spec.{f}" for f in UNSAFE_FIELDS if _normal(applied.get(f)) != _normal(raw.get(f))]
    effective = {k: v for k, v in raw.items() if k not in UNSAFE_FIELDS}
    effective.update({f: applied[f] for f in UNSAFE_FIELDS if f in applied})
    return effective, refused


def _run_spec(spec: FederatedRoundSpec, replicas: int) -> FederatedRoundSpec:
    coordinator = spec.coordinator.model_copy(update={"replicas": replicas})
    return spec.model_copy(update={"coordinator": coordinator})


def _available(deployment: dict[str, Any] | None) -> tuple[int, int]:
    if not deployment:
        return 0, 0
    wanted = int((deployment.get("spec") or {}).get("replicas") or 0)
    return int((deployment.get("status") or {}).get("availableReplicas") or 0), wanted


async def _ask(session: aiohttp.ClientSession, url: str) -> Coordinator:
    found = Coordinator(url)
    try:
        async with session.get(f"{url}/status") as response:
            if response.status != 200:
                found.error = f"GET {url}/status answered {response.status}"
                return found
            found.status = json.loads(await response.read())
        async with session.get(f"{url}/readyz") as response:
            found.ready = response.status == 200
            found.ready_detail = (await response.text())[:200]
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        found.error = f"{url}: {error or type(error).__name__}"
    return found


async def reconcile(namespace: str, name: str, trigger: str, session: aiohttp.ClientSession) -> str | None:
    """Bring one round to its desired state and write its whole status; return its phase."""
    metrics.RECONCILES.labels(trigger=trigger).inc()
    async with _locks[(namespace, name)]:
        try:
            phase = await _reconcile(namespace, name, session)
        except Exception as error:
            metrics.RECONCILE_ERRORS.labels(trigger=trigger).inc()
            message = f"{type(error).__name__}: {error}"
            logger.warning(
                "reconciling %s/%s failed (%s); retrying at the next resync", namespace, name, message
            )
            if _last_error.get((namespace, name)) != message:  # one event per distinct failure
                _last_error[(namespace, name)] = message
                body = await _quietly(kube.read_round(namespace, name))
                if body:
                    await _event(body, "Warning", "ReconcileFailed", f"{message}; retrying")
            raise
        _last_error.pop((namespace, name), None)
        metrics.round_phase(namespace, name, phase)
        return phase


async def _quietly(coroutine: Any) -> Any:
    try:
        return await coroutine
    except Exception:
        return None


async def _event(body: dict[str, Any], kind: str, reason: str, message: str) -> None:
    try:
        await kube.post_event(body, kind, reason, message)
    except Exception as error:
        logger.warning("cannot post event %s: %s", reason, error)


async def _reconcile(namespace: str, name: str, session: aiohttp.ClientSession) -> str | None:
    body = await kube.read_round(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        metrics.round_phase(namespace, name, None)
        return None
    generation = int(body["metadata"].get("generation") or 1)
    raw = dict(body.get("spec") or {})
    status = dict(body.get("status") or {})
    previous_phase = status.get("phase")
    applied = status.get("appliedSpec")
    new = dict(status)
    new["observedGeneration"] = generation
    events: list[tuple[str, str, str]] = []
    current: list[Condition] = []

    # -- observe and decide: the spec ------------------------------------------------------------
    effective, refused = decide_spec(raw, applied)
    problems: list[str] = []
    spec: FederatedRoundSpec | None = None
    try:
        parse_spec(raw, name=name)
        spec = parse_spec(effective)
    except InvalidSpecError as error:
        problems = error.problems
    if spec is None:
        message = "; ".join(problems)
        new["phase"] = "Failed"
        current += [
            Condition(
                "Failed", "True", "InvalidSpec", f"{message}; fix the spec (kubectl edit round {name})"
            ),
            Condition("Ready", "False", "InvalidSpec", "the spec is invalid: see the Failed condition"),
        ]
        current += _carried(status, ("SpecChangeRefused", "Suspended", "RedisReady", "CoordinatorReady"))
        current += _carried(status, ("ModelPublished", "Succeeded"))
        return await _write(
            body=body, old=status, new=new, current=current, generation=generation, events=events
        )

    current.append(Condition("Failed", "False", "SpecValid", "the spec is valid"))
    if refused:
        current.append(
            Condition(
                "SpecChangeRefused",
                "True",
                "UnsafeChange",
                f"{', '.join(refused)} cannot change while the round exists (its coordinator state "
                "depends on them); the round keeps running with the applied value. Revert the change, "
                "or create a new FederatedRound",
            )
        )
    else:
        current.append(Condition("SpecChangeRefused", "False", "Applied", "the spec is rolled out"))

    finished_before = previous_phase == "Succeeded"
    replicas = 0 if finished_before or spec.suspend else spec.coordinator.replicas

    if needs_finalizer(body) and not has_finalizer(body):
        # kopf adds it after this trigger; its patch triggers the next reconcile
        current.append(
            Condition("Ready", "False", "AwaitingFinalizer", f"waiting for the {FINALIZER} finalizer")
        )
        new["phase"] = "Provisioning"
        return await _write(
            body=body, old=status, new=new, current=current, generation=generation, events=events
        )

    # -- apply: the children -------------------------------------------------------------------
    provisioned = await provision(body, _run_spec(spec, replicas))
    for key, what in provisioned.changed.items():
        events.append(("Normal", f"Child{what.capitalize()}", f"{what} {key}"))
    new["appliedSpec"] = effective

    # -- observe: the children and the coordinator ----------------------------------------------
    url = coordinator_url(namespace, name)
    new["coordinator"] = url
    asked: Coordinator | None = None
    if replicas > 0:
        asked = await _ask(session, url)
    coordinator_deployment = provisioned.objects.get(f"Deployment/{coordinator_name(name)}")
    available, wanted = _available(coordinator_deployment)
    pods = f"{available}/{wanted} coordinator pods available"

    if asked is not None and asked.status is not None:
        new.update(mirror(asked.status))
        completed = asked.status.get("rounds_completed")
        if completed is not None:
            new["completedRounds"] = int(completed)
        model = asked.status.get("global_model")
        latest_round = (status.get("latestModel") or {}).get("round")
        if isinstance(model, dict) and model.get("round_id") != latest_round:
            published = await publish(session, body, url, spec, int(model["round_id"]))
            if published is not None:
                new["latestModel"] = published.latest_model
                current.append(Condition("ModelPublished", "True", published.reason, published.message))
                events.append(("Normal", "ModelPublished", published.message))
        _point_at_archive(new, status, asked.status)
        done = int(new.get("completedRounds") or 0)
        says_finished = bool(asked.status.get("finished")) and asked.status.get("max_rounds") == spec.rounds
        published_last = not isinstance(model, dict) or (new.get("latestModel") or {}).get(
            "round"
        ) == model.get("round_id")
        if spec.model_export.s3 is not None and isinstance(model, dict):
            # stopping the coordinator before its S3 upload would strand the model in Redis
            published_last = published_last and "s3" in (new.get("latestModel") or {})
        if spec.rounds and (done >= spec.rounds or says_finished) and published_last:
            new["phase"] = "Succeeded"
            new["finishedAt"] = now()
            await provision(body, _run_spec(spec, 0))  # the coordinator stops: terminal

    if not any(c.type == "ModelPublished" for c in current):
        current += _carried(status, ("ModelPublished",)) or [
            Condition("ModelPublished", "False", "NoModelYet", "no global model yet")
        ]
    if spec.model_export.s3 is not None:
        archived = _archive_condition(
            asked.status if asked is not None else None, new, coordinator_name(name)
        )
        current += [archived] if archived is not None else _carried(status, ("ModelArchived",))

    # -- decide: phase and conditions ----------------------------------------------------------
    if finished_before or new.get("phase") == "Succeeded":
        new["phase"] = "Succeeded"
    elif spec.suspend:
        new["phase"] = "Suspended"
    elif asked is not None and asked.status is not None:
        new["phase"] = "Running"
    else:
        new["phase"] = "Provisioning"
    phase = new["phase"]

    if spec.suspend and phase != "Succeeded":
        current.append(
            Condition("Suspended", "True", "Suspended", "spec.suspend: the coordinator is scaled to 0")
        )
    else:
        current.append(Condition("Suspended", "False", "NotSuspended", "spec.suspend is false"))

    done = int(new.get("completedRounds") or 0)
    if phase == "Succeeded":
        current.append(
            Condition("Succeeded", "True", "RoundsCompleted", f"{done} of {spec.rounds} rounds completed")
        )
    else:
        goal = (
            f"{done} of {spec.rounds} rounds completed"
            if spec.rounds
            else f"{done} rounds completed; runs until deleted"
        )
        current.append(Condition("Succeeded", "False", "InProgress", goal))

    current.append(_coordinator_ready(phase, asked, pods))
    current.append(_redis_ready(name, spec, provisioned, asked, phase))
    current.append(_ready(phase, current))

    if phase != previous_phase:
        events.append(("Normal", "PhaseChanged", f"{previous_phase or 'New'} -> {phase}"))
    if new.get("petPhase") != status.get("petPhase") and new.get("petPhase"):
        events.append(("Normal", "PetPhaseChanged", f"round {new.get('round')}: {new['petPhase']}"))
    if phase == "Succeeded":
        await _expire(body, new, spec)
    return await _write(body=body, old=status, new=new, current=current, generation=generation, events=events)


def _carried(status: dict[str, Any], kinds: tuple[str, ...]) -> list[Condition]:
    """Conditions this reconcile cannot observe, kept as they were (re-stamped with its generation)."""
    kept = []
    for found in status.get("conditions") or []:
        if found.get("type") in kinds:
            kept.append(
                Condition(
                    found["type"],
                    found.get("status", "Unknown"),
                    found.get("reason", "Unknown"),
                    found.get("message", ""),
                )
            )
    return kept


def _coordinator_ready(phase: str, asked: Coordinator | None, pods: str) -> Condition:
    if phase == "Succeeded":
        return Condition(
            "CoordinatorReady", "False", "Finished", "the round is finished: the coordinator is scaled to 0"
        )
    if phase == "Suspended":
        return Condition(
            "CoordinatorReady", "False", "Suspended", "spec.suspend: the coordinator is scaled to 0"
        )
    if asked is None:
        return Condition(
            "CoordinatorReady", "False", "ScaledToZero", f"spec.coordinator.replicas is 0; {pods}"
        )
    if asked.status is None:
        return Condition("CoordinatorReady", "False", "Unreachable", f"{asked.error}; {pods}")
    return Condition("CoordinatorReady", "True", "Serving", f"{asked.url} answers; {pods}")


def _redis_ready(
    name: str, spec: FederatedRoundSpec, provisioned: Provisioned, asked: Coordinator | None, phase: str
) -> Condition:
    """From the coordinator's /readyz (it pings its store), else the Redis Deployment's status;
    never claimed without one of them."""
    if asked is not None and asked.ready is True:
        return Condition(
            "RedisReady", "True", "CoordinatorReachesRedis", "the coordinator's /readyz reaches its store"
        )
    if asked is not None and asked.ready is False:
        return Condition(
            "RedisReady", "False", "StoreUnavailable", f"the coordinator's /readyz: {asked.ready_detail}"
        )
    if spec.redis.mode == "Managed":
        available, wanted = _available(provisioned.objects.get(f"Deployment/{redis_name(name)}"))
        if available >= 1:
            return Condition(
                "RedisReady", "True", "RedisAvailable", f"{available}/{wanted} Redis pods available"
            )
        return Condition(
            "RedisReady",
            "False",
            "RedisNotAvailable",
            f"{available}/{wanted} Redis pods available (Deployment {redis_name(name)})",
        )
    why = "the round is finished" if phase == "Succeeded" else "the coordinator does not answer"
    return Condition(
        "RedisReady",
        "Unknown",
        "NotChecked",
        f"external Redis: checked through the coordinator's /readyz, and {why}",
    )


def _ready(phase: str, current: list[Condition]) -> Condition:
    by_type = {c.type: c for c in current}
    if phase != "Running":
        reasons = {"Provisioning": "CoordinatorNotReady", "Suspended": "Suspended", "Succeeded": "Succeeded"}
        return Condition("Ready", "False", reasons.get(phase, phase), f"phase {phase}")
    for kind in ("CoordinatorReady", "RedisReady"):
        if by_type[kind].status != "True":
            return Condition("Ready", "False", f"{kind[:-5]}NotReady", by_type[kind].message)
    return Condition("Ready", "True", "Ready", "the coordinator serves participants")


async def _expire(body: dict[str, Any], new: dict[str, Any], spec: FederatedRoundSpec) -> None:
    ttl = spec.ttl_seconds_after_finished
    if ttl is None or not new.get("finishedAt"):
        return
    finished = datetime.datetime.strptime(new["finishedAt"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    )
    if (datetime.datetime.now(tz=datetime.UTC) - finished).total_seconds() >= ttl:
        await _event(body, "Normal", "Expired", "ttlSecondsAfterFinished elapsed: deleting the round")
        await kube.delete_round(body["metadata"]["namespace"], body["metadata"]["name"])


_WARNINGS = {("Failed", "True"), ("SpecChangeRefused", "True"), ("RedisReady", "False")}
_WARNING_REASONS = {"UploadFailing"}


async def _write(
    *,
    body: dict[str, Any],
    old: dict[str, Any],
    new: dict[str, Any],
    current: list[Condition],
    generation: int,
    events: list[tuple[str, str, str]],
) -> str:
    """The whole status in one patch (only if it changed), then the events of what changed."""
    new["conditions"] = conditions(old.get("conditions"), current, generation)
    new = {key: value for key, value in new.items() if value is not None}  # absent, not null
    before = {c.get("type"): c for c in old.get("conditions") or []}
    for item in current:
        was = before.get(item.type)
        warning = (item.type, item.status) in _WARNINGS or item.reason in _WARNING_REASONS
        if (was is None and warning) or (
            was is not None and (was.get("status"), was.get("reason")) != (item.status, item.reason)
        ):
            events.append(
                (
                    "Warning" if warning else "Normal",
                    item.reason,
                    f"{item.type}={item.status}: {item.message}",
                )
            )
    if new != old:
        patch = {**new, **{key: None for key in old if key not in new}}
        await kube.patch_status(body["metadata"]["namespace"], body["metadata"]["name"], patch)
    for kind, reason, message in events:
        await _event(body, kind, reason, message)
    return str(new["phase"])


def _point_at_archive(new: dict[str, Any], status: dict[str, Any], coordinator: dict[str, Any]) -> None:
    """status.latestModel.s3 once the coordinator reports that model uploaded (spec.modelExport.s3)."""
    latest = dict(new.get("latestModel") or status.get("latestModel") or {})
    archived = (coordinator.get("archive") or {}).get("latest") or {}
    if latest and archived.get("round_id") == latest.get("round") and latest.get("s3") != archived.get("uri"):
        new["latestModel"] = {**latest, "s3": archived["uri"]}


def _archive_condition(
    coordinator: dict[str, Any] | None, new: dict[str, Any], deployment: str
) -> Condition | None:
    """`ModelArchived` from the coordinator's archive report (`spec.modelExport.s3`); None when
    the coordinator did not answer (the previous condition is carried). A failing upload keeps
    the round Running and its models queued in Redis: the condition is where a user sees why."""
    if coordinator is None or not isinstance(coordinator.get("archive"), dict):
        return None
    archive = coordinator["archive"]
    pending = int(archive.get("pending") or 0)
    where = f"bucket {archive.get('bucket')} at {archive.get('endpoint')}"
    if archive.get("last_error"):
        return Condition(
            "ModelArchived",
            "False",
            "UploadFailing",
            f"{pending} global model(s) queued for {where}: {archive['last_error']}; the coordinator "
            "retries, nothing is lost. Check spec.modelExport.s3 and its credentials Secret, then "
            f"kubectl rollout restart deployment/{deployment}",
        )
    if pending:
        return Condition(
            "ModelArchived", "False", "Uploading", f"{pending} global model(s) queued for {where}"
        )
    uri = (new.get("latestModel") or {}).get("s3")
    if uri:
        return Condition("ModelArchived", "True", "Uploaded", f"the latest global model is {uri}")
    return Condition("ModelArchived", "False", "NoModelYet", f"no global model uploaded to {where} yet")
