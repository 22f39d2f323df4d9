"""Provisioning: from a valid spec to the round's children (idempotent, owner-referenced)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import kopf

from xaynet.operator import kube
from xaynet.operator.children import coordinator, network_policy, redis
from xaynet.operator.children.common import COORDINATOR_PORT, coordinator_name, redis_name, redis_namespace
from xaynet.operator.spec import FederatedRoundSpec, coordinator_settings, render_config

SERVICE_MONITOR_GROUP = "monitoring.coreos.com"

# The operator's own setting (never the round's): where a round's coordinator answers.
# Placeholders: {name} (the round), {namespace}, {service} (`<round>-coordinator`), {port}.
URL_TEMPLATE_ENV = "XAYNET_OPERATOR_COORDINATOR_URL_TEMPLATE"
DEFAULT_URL_TEMPLATE = "http://{service}.{namespace}.svc:{port}"


def coordinator_url(namespace: str, name: str) -> str:
    """The coordinator behind the Service the operator created for the round.

    Deliberately not configurable per round: whoever may edit a round must not be able to
    point the operator's HTTP calls elsewhere and have the answer published as its model.
    """
    template = os.environ.get(URL_TEMPLATE_ENV) or DEFAULT_URL_TEMPLATE
    url = template.format(
        name=name, namespace=namespace, service=coordinator_name(name), port=COORDINATOR_PORT
    )
    return url.rstrip("/")


@dataclass
class Provisioned:
    """What happened to each child (`created`, `updated`, ...) and the children as they are."""

    outcome: dict[str, str] = field(default_factory=dict)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def changed(self) -> dict[str, str]:
        return {k: v for k, v in self.outcome.items() if v in ("created", "updated")}


async def provision(body: dict[str, Any], spec: FederatedRoundSpec) -> Provisioned:
    """Create what is missing, update what differs. `spec` is the spec to run (its unsafe
    fields already taken from the applied spec by the caller)."""
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    result = Provisioned()

    async def ensure(child: dict[str, Any], update: bool = True) -> None:
        kopf.adopt(child, owner=body)  # type: ignore[arg-type]
        key = f"{child['kind']}/{child['metadata']['name']}"
        result.outcome[key], result.objects[key] = await kube.ensure(namespace, child, update=update)

    if spec.redis.mode == "Managed":
        await ensure(redis.password_secret(name), update=False)  # never rotate a live password
        claim = redis.data_claim(name, spec)
        if claim is not None:
            await ensure(claim, update=False)  # spec.redis is immutable, and so is a claim's size
        await ensure(redis.deployment(name, spec))
        await ensure(redis.service(name))
        await ensure(network_policy.redis_policy(name))
        redis_url: str | None = f"redis://{redis_name(name)}.{namespace}.svc:6379/0"
    else:
        redis_url = spec.redis.url
    settings = coordinator_settings(spec, namespace=redis_namespace(namespace, name), redis_url=redis_url)
    config = render_config(settings)
    await ensure(coordinator.config_map(name, config))
    await ensure(coordinator.deployment(name, namespace, spec, config))
    await ensure(coordinator.service(name))
    await ensure(coordinator.metrics_service(name))
    await ensure(network_policy.coordinator_policy(name, spec))
    if spec.metrics.service_monitor and await kube.serves_group(SERVICE_MONITOR_GROUP):
        monitor = coordinator.service_monitor(name)
        kopf.adopt(monitor, owner=body)  # type: ignore[arg-type]
        await kube.ensure_custom(namespace, monitor, "servicemonitors")
        result.outcome[f"ServiceMonitor/{monitor['metadata']['name']}"] = "ensured"
    return result
