"""A Kubernetes API for tests: kmock's emulator with the gaps `kopf` and `kubectl` need filled.

Run as its own process (`python -m tests.k8s.apiserver --port P --crd crds/x.yaml`) so that
test bodies may block on `kubectl`. What is added to kmock 0.8 (see
shared/notes/KUBERNETES_TESTING.md): namespace routes, server-set metadata (uid,
resourceVersion, generation, creationTimestamp, generateName), JSON patches and PUT, list
kinds, `as=Table` from the CRD's printer columns, and a small `/openapi/v3` so `kubectl apply`
leaves validation to the server. Not emulated: admission, schema validation, selectors,
garbage collection, controllers — the operator under test must not rely on them.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
import yaml
from kmock._internal import enums, rendering

SHORT = {"configmaps": {"cm"}, "services": {"svc"}, "deployments": {"deploy"}, "events": {"ev"}}
CORE = {
    "configmaps": ("ConfigMap", True),
    "services": ("Service", True),
    "secrets": ("Secret", True),
    "events": ("Event", True),
    "pods": ("Pod", True),
    "serviceaccounts": ("ServiceAccount", True),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True),
}
APPS = {"deployments": ("Deployment", True)}
COORDINATION = {"leases": ("Lease", True)}
NETWORKING = {"networkpolicies": ("NetworkPolicy", True)}


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch_from(old: Any, new: Any) -> Any:
    """A JSON merge patch that turns `old` into `new` (None deletes a key)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch_from(old[key], value)
    for key in old:
        if key not in new:
            patch[key] = None
    return patch


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    crds: list[dict[str, Any]] = attrs.field(factory=list)
    namespaces: set[str] = attrs.field(factory=lambda: {"default"})
    log_requests: bool = False
    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1000))

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for plural, (kind, namespaced) in CORE.items():
            self.resources[f"v1/{plural}"] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=_VERBS,
                shortnames=SHORT.get(plural, set()),
            )
        self.resources["v1/namespaces"] = kmock.ResourceInfo(
            kind="Namespace", singular="namespace", namespaced=False, verbs=_VERBS, shortnames={"ns"}
        )
        for plural, (kind, namespaced) in APPS.items():
            self.resources[f"apps/v1/{plural}"] = kmock.ResourceInfo(
                kind=kind,
                singular=kind.lower(),
                namespaced=namespaced,
                verbs=_VERBS,
                subresources={"status", "scale"},
                shortnames=SHORT.get(plural, set()),
            )
        for plural, (kind, namespaced) in COORDINATION.items():
            self.resources[f"coordination.k8s.io/v1/{plural}"] = kmock.ResourceInfo(
                kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=_VERBS
            )
        for plural, (kind, namespaced) in NETWORKING.items():
            self.resources[f"networking.k8s.io/v1/{plural}"] = kmock.ResourceInfo(
                kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=_VERBS
            )
        for crd in self.crds:
            names, group = crd["spec"]["names"], crd["spec"]["group"]
            for version in crd["spec"]["versions"]:
                self.resources[f"{group}/{version['name']}/{names['plural']}"] = kmock.ResourceInfo(
                    kind=names["kind"],
                    singular=names.get("singular"),
                    namespaced=crd["spec"]["scope"] == "Namespaced",
                    verbs=_VERBS,
                    shortnames=set(names.get("shortNames", [])),
                    categories=set(names.get("categories", [])),
                    subresources=set(version.get("subresources", {})),
                )

    # -- routes kmock does not parse, and post-processing for kubectl ---------------------
    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if self.log_requests:  # the client too: tests tell the operator's calls from kubectl's
            print(f"{raw.method} {raw.path_qs} {raw.headers.get('User-Agent', '-').split()[0]}", flush=True)
        path = raw.path.rstrip("/")
        if raw.path == "/apis/":  # the Python client's discovery asks with the slash
            raw = raw.clone(rel_url=raw.rel_url.with_path("/apis"))
        if path == "/api/v1/namespaces" and raw.method == "GET" and raw.query.get("watch") == "true":
            return await self._watch_namespaces(raw)
        if path == "/api/v1/namespaces" and raw.method == "GET":
            return aiohttp.web.json_response(
                {
                    "kind": "NamespaceList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": [self._namespace(n) for n in sorted(self.namespaces)],
                }
            )
        match = re.fullmatch(r"/api/v1/namespaces/([^/]+)", path)
        if match and raw.method == "GET":
            name = match.group(1)
            if name not in self.namespaces:
                return aiohttp.web.json_response(
                    _status(404, "NotFound", f'namespaces "{name}" not found'), status=404
                )
            return aiohttp.web.json_response(self._namespace(name))
        if path.startswith("/openapi"):
            return self._openapi(path)
        if path == "/api":
            return aiohttp.web.json_response(
                {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            )
        response = await super().__call__(raw)
        return self._postprocess(raw, response)

    def _group_versions(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for resource in self.resources:
            prefix = "api/v1" if not resource.group else f"apis/{resource.group}/{resource.version}"
            found.setdefault(prefix, []).append(resource)
        return found

    def _openapi(self, path: str) -> aiohttp.web.StreamResponse:
        """Just enough OpenAPI v3 for kubectl to see that the server validates fields itself."""
        versions = self._group_versions()
        if path == "/openapi/v3":
            return aiohttp.web.json_response(
                {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}"} for gv in versions}}
            )
        gv = path.removeprefix("/openapi/v3/")
        if gv not in versions:
            return aiohttp.web.json_response(_status(404, "NotFound", path), status=404)
        parameter = [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}]
        paths: dict[str, Any] = {}
        for resource in versions[gv]:
            base = f"/{gv}/namespaces/{{namespace}}/{resource.plural}"
            gvk = {
                "group": resource.group,
                "version": resource.version,
                "kind": self.resources[resource].kind,
            }
            operation = {"parameters": parameter, "x-kubernetes-group-version-kind": gvk}
            paths[base] = {"post": operation}
            paths[base + "/{name}"] = {"patch": operation, "put": operation}
        return aiohttp.web.json_response({"openapi": "3.0.0", "paths": paths, "components": {"schemas": {}}})

    async def _watch_namespaces(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """The namespaces never change here: announce them, then hold the stream open."""
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)
        for name in sorted(self.namespaces):
            await response.write(
                json.dumps({"type": "ADDED", "object": self._namespace(name)}).encode() + b"\n"
            )
        timeout = float(raw.query.get("timeoutSeconds", "300"))
        await asyncio.sleep(timeout)
        await response.write_eof()
        return response

    def _namespace(self, name: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name))},
            "status": {"phase": "Active"},
        }

    def _postprocess(
        self, raw: aiohttp.web.BaseRequest, response: aiohttp.web.StreamResponse
    ) -> aiohttp.web.StreamResponse:
        if not isinstance(response, aiohttp.web.Response) or response.body is None or raw.method != "GET":
            return response
        if raw.query.get("watch") == "true":
            return response
        try:
            data = json.loads(bytes(response.body))  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return response
        if not isinstance(data, dict):
            return response
        parsed = _parse(raw.path)
        if data.get("kind") == "APIResourceList":
            if data.get("groupVersion") == "/v1":
                data["groupVersion"] = "v1"
            for entry in data.get("resources", []):
                if "/" in entry["name"]:
                    entry.pop("shortNames", None)
                    entry.pop("categories", None)
                if entry.get("namespaced") is None:
                    entry["namespaced"] = True
        elif parsed is not None and "items" in data and parsed["name"] is None:
            info = self._info(parsed)
            kind = info.kind if info and info.kind else "Object"
            data["kind"] = f"{kind}List"
            data["apiVersion"] = parsed["apiVersion"]
            data["metadata"] = {"resourceVersion": str(next(self._versions))}
        if parsed is not None and "as=Table" in raw.headers.get("Accept", ""):
            data = self._table(parsed, data)
        return aiohttp.web.json_response(data, status=response.status)

    def _info(self, parsed: dict[str, Any]) -> kmock.ResourceInfo | None:
        key = f"{parsed['apiVersion']}/{parsed['plural']}"
        for resource in self.resources:
            if f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/") == key:
                return self.resources[resource]
        return None

    def _table(self, parsed: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        items = data.get("items", [data])
        columns = [{"name": "Name", "type": "string", "format": "name"}]
        paths = []
        for crd in self.crds:
            if crd["spec"]["names"]["plural"] == parsed["plural"]:
                for column in crd["spec"]["versions"][0].get("additionalPrinterColumns", []):
                    columns.append({"name": column["name"], "type": column["type"], "format": ""})
                    paths.append(column["jsonPath"])
        if not paths:
            columns.append({"name": "Age", "type": "date", "format": ""})
            paths.append(".metadata.creationTimestamp")
        rows = []
        for item in items:
            cells: list[Any] = [item.get("metadata", {}).get("name")]
            for json_path in paths:
                value = _json_path(item, json_path)
                if json_path == ".metadata.creationTimestamp" and value:
                    value = _age(value)
                cells.append(value)
            rows.append(
                {
                    "cells": cells,
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": item.get("metadata", {}),
                    },
                }
            )
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "1"},
            "columnDefinitions": columns,
            "rows": rows,
        }

    # -- server-side object semantics --------------------------------------------------------
    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None:
            try:
                request = self._server_side(request)
            except kmock.KubernetesError as error:
                return await self._render_error(error)
        return await super()._handle(request)

    def _server_side(self, request: rendering.Request) -> rendering.Request:
        if request.action == enums.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = str(next(self._versions))
            meta.setdefault("creationTimestamp", _now())
            meta["generation"] = 1
            return request
        if request.name is None or request.method not in ("PATCH", "PUT"):
            return request
        current = self._current(request)
        if current is None:
            return request
        sent = request.data.get("metadata", {}) if isinstance(request.data, dict) else {}
        expected = sent.get("resourceVersion") if isinstance(sent, dict) else None
        if expected and expected != current.get("metadata", {}).get("resourceVersion"):
            # optimistic concurrency, as a real API server: a write based on an old read fails
            raise kmock.KubernetesError(
                status=409,
                reason="Conflict",
                message=f"the object has been modified (resourceVersion {expected} is stale)",
            )
        if request.method == "PUT":
            new = copy.deepcopy(request.data)
        elif isinstance(request.data, list):
            try:
                new = jsonpatch.apply_patch(current, request.data)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                raise kmock.KubernetesError(
                    status=422, reason="Invalid", message=f"the JSON patch failed: {error}"
                ) from None
        elif isinstance(request.data, dict):
            new = jsonpatch.apply_patch(current, [])  # a copy
            new = _merge(new, request.data)
        else:
            return request
        if request.subresource == "status":
            new = {**copy.deepcopy(current), "status": new.get("status")}
        elif request.subresource is None:
            new["status"] = current.get("status")
        new.setdefault("metadata", {})
        for key in ("uid", "creationTimestamp", "namespace", "name"):
            if key in current.get("metadata", {}):
                new["metadata"][key] = current["metadata"][key]
        new["metadata"]["resourceVersion"] = str(next(self._versions))
        generation = current.get("metadata", {}).get("generation", 1)
        new["metadata"]["generation"] = generation + (1 if new.get("spec") != current.get("spec") else 0)
        # kmock tracks requests by identity, so the parsed request is amended in place.
        object.__setattr__(request, "data", merge_patch_from(current, new))
        object.__setattr__(request, "action", enums.action.UPDATE)
        return request

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        """Like kmock's, but a watch from resourceVersion N replays only objects newer than N."""
        yield b""
        since = _version(request.params.get("resourceVersion"))
        check = self._KubernetesEmulator__check  # type: ignore[attr-defined]
        async with self._lock:
            objects = self._KubernetesEmulator__get_objs(request, strict=False)  # type: ignore[attr-defined]
            events = [
                {"type": "ADDED", "object": obj.raw}
                for obj in objects
                if not obj.deleted and _version(obj.raw.get("metadata", {}).get("resourceVersion")) > since
            ]
        for event in events:
            yield event
        assert request.resource is not None
        async for event in self._buses[request.resource]:
            meta = event.get("object", {}).get("metadata", {})
            if check(request, request.resource, meta.get("namespace"), meta.get("name"), strict=False):
                yield event

    def _current(self, request: rendering.Request) -> dict[str, Any] | None:
        for (resource, namespace, name), obj in self.objects.items():
            if resource == request.resource and namespace == request.namespace and name == request.name:
                return None if obj.deleted else copy.deepcopy(obj.raw)
        return None


_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


def _version(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return patch
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(base.get(key), value)
    return result


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def _parse(path: str) -> dict[str, Any] | None:
    match = re.fullmatch(
        r"/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?",
        path,
    )
    if not match:
        return None
    api_version = "v1" if match.group("cv") else f"{match.group('g')}/{match.group('v')}"
    return {
        "apiVersion": api_version,
        "plural": match.group("plural"),
        "name": match.group("name"),
        "namespace": match.group("ns"),
    }


def _json_path(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _age(timestamp: str) -> str:
    created = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(tz=datetime.UTC) - created).total_seconds())
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m"


async def serve(port: int, crd_paths: list[str], namespaces: list[str], log_requests: bool = False) -> None:
    crds = [yaml.safe_load(open(p)) for p in crd_paths]  # noqa: SIM115
    handler = ApiServer(crds=crds, namespaces={"default", *namespaces}, log_requests=log_requests)
    async with handler, kmock.Server(handler, port=port):
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--crd", action="append", default=[])
    parser.add_argument("--namespace", action="append", default=[])
    parser.add_argument("--log-requests", action="store_true")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.crd, args.namespace, args.log_requests))


if __name__ == "__main__":
    main()
