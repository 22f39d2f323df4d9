"""Publishing a global model: a ConfigMap, or a pointer to the coordinator when it is too large."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf

from xaynet.operator import kube
from xaynet.operator.children.common import coordinator_name, model_configmap_name
from xaynet.operator.children.model_configmap import model_config_map
from xaynet.operator.spec import FederatedRoundSpec


@dataclass(frozen=True)
class Published:
    latest_model: dict[str, Any]  # status.latestModel
    reason: str  # ModelPublished condition's reason: ConfigMap, Artifact or ConfigMapDisabled
    message: str


async def publish(
    session: aiohttp.ClientSession, body: dict[str, Any], url: str, spec: FederatedRoundSpec, round_id: int
) -> Published | None:
    """Fetch the coordinator's model of `round_id` and publish it; None when the coordinator
    already serves a newer one (the next reconcile publishes that)."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    async with session.get(f"{url}/model") as response:
        if response.status != 200:
            return None
        data = await response.read()
        served_round = response.headers.get("X-Xaynet-Round")
    if served_round is not None and int(served_round) != round_id:
        return None
    checksum = f"sha256:{hashlib.sha256(data).hexdigest()}"
    info: dict[str, Any] = {"round": round_id, "size": len(data), "checksum": checksum}
    if spec.model_export.config_map and len(data) <= spec.model_export.max_config_map_bytes:
        config_map = model_config_map(name, round_id, data, checksum)
        kopf.adopt(config_map, owner=body)  # type: ignore[arg-type]
        await kube.ensure(namespace, config_map)
        info["name"] = model_configmap_name(name)
        message = f"round {round_id}: ConfigMap {info['name']} ({len(data)} bytes, {checksum})"
        return Published(info, "ConfigMap", message)
    info["artifact"] = {
        "url": f"{url}/model",
        "path": f"/models/global-model-{round_id:08d}.bin",
        "pod": coordinator_name(name),
    }
    reason = "Artifact" if spec.model_export.config_map else "ConfigMapDisabled"
    message = (
        f"round {round_id}: the model ({len(data)} bytes) exceeds spec.modelExport.maxConfigMapBytes; "
        f"it stays with the coordinator at {info['artifact']['url']} and {info['artifact']['path']}"
    )
    return Published(info, reason, message)
