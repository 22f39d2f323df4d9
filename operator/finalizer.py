"""Which rounds carry the finalizer: only those on an external Redis (their data outlives them).

kopf adds and removes it (the on.delete handler's filter); the reconcile provisions an external
round only once it is there, so a round deleted at once never leaves its keys behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FINALIZER = "xaynet.dev/cleanup"


def applied_redis(body: Mapping[str, Any]) -> dict[str, Any]:
    """The Redis the round runs with: the applied spec's (a refused edit changes nothing)."""
    applied = (body.get("status") or {}).get("appliedSpec") or {}
    return dict(applied.get("redis") or (body.get("spec") or {}).get("redis") or {})


def needs_finalizer(body: Mapping[str, Any]) -> bool:
    spec_redis = (body.get("spec") or {}).get("redis") or {}
    return applied_redis(body).get("mode") == "External" or spec_redis.get("mode") == "External"


def has_finalizer(body: Mapping[str, Any]) -> bool:
    return FINALIZER in ((body.get("metadata") or {}).get("finalizers") or [])
