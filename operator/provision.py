"""Provisioning: from a valid spec to the round's children (idempotent, owner-referenced)."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from xaynet.operator import kube
from xaynet.operator.children import coordinator, redis
from xaynet.operator.children.common import COORDINATOR_PORT, coordinator_name, redis_name, redis_namespace
from xaynet.operator.spec import FederatedRoundSpec, coordinator_settings, render_config

SERVICE_MONITOR_CRD = "servicemonitors.monitoring.coreos.com"


def coordinator_url(body: kopf.Body | dict[str, Any]) -> str:
    """Where the round's coordinator answers; an annotation can point elsewhere (tests, debugging)."""
    meta = body["metadata"]
    override = (meta.get("annotations") or {}).get("xaynet.dev/coordinator-url")
    if override:
        return str(override).rstrip("/")
    return f"http://{coordinator_name(meta['name'])}.{meta['namespace']}.svc:{COORDINATOR_PORT}"


async def provision(
    body: kopf.Body, spec: FederatedRoundSpec, logger: logging.Logger | kopf.Logger
) -> dict[str, str]:
    """Create what is missing, update what differs; return what happened to each child."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    outcome: dict[str, str] = {}

    async def ensure(child: dict[str, Any], update: bool = True) -> None:
        kopf.adopt(child, owner=body)
        key = f"{child['kind']}/{child['metadata']['name']}"
        outcome[key] = await kube.ensure(namespace, child, update=update)

    if spec.redis.mode == "Managed":
        await ensure(redis.password_secret(name), update=False)  # never rotate a live password
        await ensure(redis.deployment(name, spec))
        await ensure(redis.service(name))
        redis_url: str | None = f"redis://{redis_name(name)}.{namespace}.svc:6379/0"
    else:
        redis_url = spec.redis.url
    settings = coordinator_settings(spec, namespace=redis_namespace(namespace, name), redis_url=redis_url)
    config = render_config(settings)
    await ensure(coordinator.config_map(name, config))
    await ensure(coordinator.deployment(name, namespace, spec, config))
    await ensure(coordinator.service(name))
    await ensure(coordinator.metrics_service(name))
    if spec.metrics.service_monitor and await kube.has_crd(SERVICE_MONITOR_CRD):
        monitor = coordinator.service_monitor(name)
        kopf.adopt(monitor, owner=body)
        await kube.ensure_custom(namespace, monitor, "servicemonitors")
        outcome[f"ServiceMonitor/{monitor['metadata']['name']}"] = "ensured"
    changed = {k: v for k, v in outcome.items() if v in ("created", "updated")}
    if changed:
        logger.info(f"children: {changed}")
    return outcome
