"""Create-or-update of child objects and status patches, through the official client.

The `kubernetes` client is synchronous; every call runs in a worker thread so kopf's event
loop is never blocked. Creation is idempotent: an existing child is patched only where it
differs (the operator may restart at any time and must not duplicate anything).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from xaynet.operator.children.common import GROUP, PLURAL, VERSION

_KINDS = {
    "ConfigMap": ("CoreV1Api", "config_map"),
    "Service": ("CoreV1Api", "service"),
    "Secret": ("CoreV1Api", "secret"),
    "Deployment": ("AppsV1Api", "deployment"),
    "PersistentVolumeClaim": ("CoreV1Api", "persistent_volume_claim"),
    "NetworkPolicy": ("NetworkingV1Api", "network_policy"),
}


def load_config() -> None:
    """In a pod: the service account; elsewhere: $KUBECONFIG (read explicitly, not at import)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    else:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))  # type: ignore[no-untyped-call]


def _api(kind: str) -> tuple[Any, str]:
    api_name, suffix = _KINDS[kind]
    return getattr(kubernetes.client, api_name)(), suffix


def _differs(desired: Any, actual: Any) -> bool:
    if actual is None and desired in ([], {}):
        return False  # the API server omits empty lists and objects (omitempty)
    if isinstance(desired, dict):
        return not isinstance(actual, dict) or any(_differs(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            not isinstance(actual, list)
            or len(desired) != len(actual)
            or any(_differs(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return bool(desired != actual)


def _ensure(namespace: str, body: dict[str, Any], update: bool) -> tuple[str, dict[str, Any]]:
    api, suffix = _api(body["kind"])
    name = body["metadata"]["name"]
    serialize = api.api_client.sanitize_for_serialization
    try:
        current = getattr(api, f"read_namespaced_{suffix}")(name, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        return "created", serialize(getattr(api, f"create_namespaced_{suffix}")(namespace, body))
    actual: dict[str, Any] = serialize(current)
    if not update:
        return "kept", actual
    desired = {k: v for k, v in body.items() if k in ("metadata", "spec", "data", "binaryData")}
    if not _differs(desired, actual):
        return "unchanged", actual
    return "updated", serialize(getattr(api, f"patch_namespaced_{suffix}")(name, namespace, body))


async def ensure(namespace: str, body: dict[str, Any], update: bool = True) -> tuple[str, dict[str, Any]]:
    """Create the object if absent, else patch it where it differs; say which happened, and
    return the object as the API server has it now (its `status` included)."""
    return await asyncio.to_thread(_ensure, namespace, body, update)


async def read_round(namespace: str, name: str) -> dict[str, Any] | None:
    """The round as the API server has it now (None once it is gone)."""

    def read() -> dict[str, Any] | None:
        try:
            found: Any = kubernetes.client.CustomObjectsApi().get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(found)

    return await asyncio.to_thread(read)


async def post_event(involved: dict[str, Any], kind: str, reason: str, message: str) -> None:
    """A Kubernetes Event about `involved` (what `kubectl describe` lists under Events)."""
    meta = involved["metadata"]
    stamp = datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event: Any = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion", f"{GROUP}/{VERSION}"),
            "kind": involved.get("kind", "FederatedRound"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "xaynet-operator"},
        "reportingComponent": "xaynet.dev/operator",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }

    def create() -> None:
        kubernetes.client.CoreV1Api().create_namespaced_event(meta["namespace"], event)

    await asyncio.to_thread(create)


async def read_secret_value(namespace: str, name: str, key: str) -> str | None:
    def read() -> str | None:
        try:
            secret = kubernetes.client.CoreV1Api().read_namespaced_secret(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        value = (secret.data or {}).get(key)
        return base64.b64decode(value).decode() if value else None

    return await asyncio.to_thread(read)


async def patch_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    def patch() -> None:
        kubernetes.client.CustomObjectsApi().patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": status}
        )

    await asyncio.to_thread(patch)


async def delete_round(namespace: str, name: str) -> None:
    def delete() -> None:
        kubernetes.client.CustomObjectsApi().delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )

    await asyncio.to_thread(delete)


async def serves_group(group: str) -> bool:
    """Whether the API server serves `group` (discovery: needs no RBAC rule, unlike reading CRDs)."""

    def read() -> bool:
        groups = kubernetes.client.ApisApi().get_api_versions().groups or []
        return any(found.name == group for found in groups)

    return await asyncio.to_thread(read)


async def ensure_custom(namespace: str, body: dict[str, Any], plural: str) -> None:
    group, version = body["apiVersion"].split("/")

    def create() -> None:
        api = kubernetes.client.CustomObjectsApi()
        try:
            api.create_namespaced_custom_object(group, version, namespace, plural, body)
        except ApiException as error:
            if error.status != 409:
                raise

    await asyncio.to_thread(create)
