"""The per-round daemon: follow the coordinator's /status into the custom resource.

Mirrors phase and counts, posts an event on every PET phase change, publishes each new
global model (a ConfigMap, or a pointer to the coordinator when it is too large), and ends
the round when the requested number of rounds is done.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
from typing import Any

import aiohttp
import kopf

from xaynet.operator import kube
from xaynet.operator.children.common import coordinator_name, model_configmap_name
from xaynet.operator.children.model_configmap import model_config_map
from xaynet.operator.provision import coordinator_url
from xaynet.operator.spec import FederatedRoundSpec, InvalidSpecError, parse_spec
from xaynet.operator.status import mirror, now, set_condition

POLL_SECONDS = float(os.environ.get("XAYNET_OPERATOR_POLL_SECONDS", "2"))


class Follower:
    def __init__(self, body: kopf.Body, logger: kopf.Logger) -> None:
        self.body = body
        self.logger = logger
        self.name = body["metadata"]["name"]
        self.namespace = body["metadata"]["namespace"]
        status = body.get("status") or {}
        self.last_pet_phase: str | None = status.get("petPhase")
        self.last_model_round: int | None = (status.get("latestModel") or {}).get("round")
        self.completed: int = int(status.get("completedRounds") or 0)

    @property
    def status(self) -> dict[str, Any]:
        return dict(self.body.get("status") or {})

    def generation(self) -> int | None:
        value = self.body["metadata"].get("generation")
        return int(value) if value is not None else None

    async def step(self, session: aiohttp.ClientSession) -> None:
        status = self.status
        if status.get("phase") in (None, "Failed", "Succeeded"):
            return  # not provisioned yet, invalid, or finished
        try:
            spec = parse_spec(dict(self.body.get("spec") or {}))
        except InvalidSpecError:
            return
        if spec.suspend:
            return
        url = coordinator_url(self.body)
        conditions = status.get("conditions")
        try:
            async with session.get(f"{url}/status") as response:
                coordinator_status = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            await self._patch(
                {
                    "conditions": set_condition(
                        conditions,
                        "CoordinatorReady",
                        False,
                        "Unreachable",
                        f"{url}: {error}",
                        self.generation(),
                    )
                }
            )
            return
        update: dict[str, Any] = {"phase": "Running", "coordinator": url, **mirror(coordinator_status)}
        conditions = set_condition(
            conditions, "CoordinatorReady", True, "Serving", f"{url} answers", self.generation()
        )
        pet_phase = update["petPhase"]
        if pet_phase != self.last_pet_phase:
            kopf.info(self.body, reason="PhaseChanged", message=f"round {update['round']}: {pet_phase}")
            self.last_pet_phase = pet_phase
        model = coordinator_status.get("global_model")
        if isinstance(model, dict) and model.get("round_id") != self.last_model_round:
            published = await self._publish(session, url, spec, int(model["round_id"]))
            if published is not None:
                update["latestModel"], reason, message = published
                conditions = set_condition(
                    conditions, "ModelPublished", True, reason, message, self.generation()
                )
                self.completed += 1
                self.last_model_round = int(model["round_id"])
                update["completedRounds"] = self.completed
                kopf.info(self.body, reason="ModelPublished", message=message)
                if spec.rounds and self.completed >= spec.rounds:
                    update["phase"] = "Succeeded"
                    update["finishedAt"] = now()
                    conditions = set_condition(
                        conditions,
                        "Succeeded",
                        True,
                        "RoundsCompleted",
                        f"{self.completed} rounds completed",
                        self.generation(),
                    )
                    await self._stop_coordinator()
                    kopf.info(self.body, reason="Succeeded", message=f"{self.completed} rounds completed")
        update["conditions"] = conditions
        await self._patch(update)

    async def _publish(
        self, session: aiohttp.ClientSession, url: str, spec: FederatedRoundSpec, round_id: int
    ) -> tuple[dict[str, Any], str, str] | None:
        async with session.get(f"{url}/model") as response:
            if response.status != 200:
                return None
            body = await response.read()
            served_round = response.headers.get("X-Xaynet-Round")
        if served_round is not None and int(served_round) != round_id:
            return None  # replaced in between; the next poll publishes the newer one
        checksum = f"sha256:{hashlib.sha256(body).hexdigest()}"
        info: dict[str, Any] = {"round": round_id, "size": len(body), "checksum": checksum}
        if spec.model_export.config_map and len(body) <= spec.model_export.max_config_map_bytes:
            config_map = model_config_map(self.name, round_id, body, checksum)
            kopf.adopt(config_map, owner=self.body)
            await kube.ensure(self.namespace, config_map)
            info["name"] = model_configmap_name(self.name)
            return (
                info,
                "ConfigMap",
                f"round {round_id}: ConfigMap {info['name']} ({len(body)} bytes, {checksum})",
            )
        info["name"] = None
        info["artifact"] = {
            "url": f"{url}/model",
            "path": f"/models/global-model-{round_id:08d}.bin",
            "pod": coordinator_name(self.name),
        }
        reason = "Artifact" if spec.model_export.config_map else "ConfigMapDisabled"
        message = (
            f"round {round_id}: the model ({len(body)} bytes) exceeds spec.modelExport.maxConfigMapBytes; "
            f"it stays with the coordinator at {info['artifact']['url']} and {info['artifact']['path']}"
        )
        return info, reason, message

    async def _stop_coordinator(self) -> None:
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": coordinator_name(self.name)},
            "spec": {"replicas": 0},
        }
        await kube.ensure(self.namespace, deployment)

    async def _patch(self, update: dict[str, Any]) -> None:
        current = self.status
        if all(current.get(k) == v for k, v in update.items()):
            return
        await kube.patch_status(self.namespace, self.name, update)


async def follow(body: kopf.Body, logger: kopf.Logger, stopped: kopf.DaemonStopped) -> None:
    follower = Follower(body, logger)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stopped:
            try:
                await follower.step(session)
            except Exception as error:
                logger.warning(f"following the coordinator failed: {error!r}")
            await _ttl(follower, logger)
            await stopped.wait(POLL_SECONDS)


async def _ttl(follower: Follower, logger: kopf.Logger) -> None:
    status = follower.status
    spec = follower.body.get("spec") or {}
    ttl = spec.get("ttlSecondsAfterFinished")
    if status.get("phase") != "Succeeded" or ttl is None or not status.get("finishedAt"):
        return
    finished = datetime.datetime.strptime(status["finishedAt"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.UTC
    )
    if (datetime.datetime.now(tz=datetime.UTC) - finished).total_seconds() >= int(ttl):
        logger.info("ttlSecondsAfterFinished elapsed: deleting the round")
        await kube.delete_round(follower.namespace, follower.name)
        await asyncio.sleep(0)
