"""Create-or-update of child objects and status patches, through the official client.

The `kubernetes` client is synchronous; every call runs in a worker thread so kopf's event
loop is never blocked. Creation is idempotent: an existing child is patched only where it
differs (the operator may restart at any time and must not duplicate anything).
"""

from __future__ import annotations

import asyncio
import base64
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
    if isinstance(desired, dict):
        return not isinstance(actual, dict) or any(_differs(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            not isinstance(actual, list)
            or len(desired) != len(actual)
            or any(_differs(d, a) for d, a in zip(desired, actual, strict=True))
        )
    return bool(desired != actual)


def _ensure(namespace: str, body: dict[str, Any], update: bool) -> str:
    api, suffix = _api(body["kind"])
    name = body["metadata"]["name"]
    try:
        current = getattr(api, f"read_namespaced_{suffix}")(name, namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        getattr(api, f"create_namespaced_{suffix}")(namespace, body)
        return "created"
    if not update:
        return "kept"
    actual = api.api_client.sanitize_for_serialization(current)
    desired = {k: v for k, v in body.items() if k in ("metadata", "spec", "data", "binaryData")}
    if not _differs(desired, actual):
        return "unchanged"
    getattr(api, f"patch_namespaced_{suffix}")(name, namespace, body)
    return "updated"


async def ensure(namespace: str, body: dict[str, Any], update: bool = True) -> str:
    """Create the object if absent, else patch it where it differs; say which happened."""
    return await asyncio.to_thread(_ensure, namespace, body, update)


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


async def has_crd(name: str) -> bool:
    def read() -> bool:
        try:
            kubernetes.client.ApiextensionsV1Api().read_custom_resource_definition(name)
        except ApiException:
            return False
        return True

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
