"""Read a global model from wherever it was published, check it, convert it (`xaynet model get`).

A global model is the coordinator's `/model` body: the original's bincode `Vec<Ratio<BigInt>>`
(exact reduced fractions, README "The model file"). It reaches users four ways, and each
carries different metadata with it:

| source | body | round | checksum to compare | mask config |
|---|---|---|---|---|
| coordinator URL | `GET /model` | `X-Xaynet-Round` | `/status` | `/status` |
| ConfigMap dump (`kubectl get cm -o json/yaml`) | `binaryData["model.bin"]` | annotation | annotation | — |
| `s3://bucket/key` | the object | metadata (or the key) | metadata | metadata |
| a file | its bytes | `global-model-<round>.bin` | `latest.json` beside it | — |

The checksum is always recomputed and compared when the source names one; a mismatch is an
error, never a warning. Without a mask config the conversion type comes from `--data-type`
(default F32, what the example configs use).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from xaynet.core.errors import XaynetError
from xaynet.core.mask.config import DataType, MaskConfig
from xaynet.core.mask.model import GlobalModel
from xaynet.core.s3 import (
    ModelMetadata,
    describe_error,
    error_code,
    parse_region,
    parse_s3_uri,
    s3_client,
    sha256_checksum,
)

Format = Literal["npy", "json", "f32"]
FORMATS: tuple[Format, ...] = ("npy", "json", "f32")
CONFIGMAP_KEY = "model.bin"
_EXPORT_NAME = re.compile(r"global-model-(\d+)\.bin$")
_ORIGINAL_KEY = re.compile(r"^(\d+)_([0-9a-f]{64})$")


class ModelSourceError(Exception):
    """The model cannot be read or does not check out: one line that says what to do."""


@dataclass
class S3Access:
    """Where `s3://` URIs are read from: flags first, then the coordinator's own variables
    (`XAYNET_S3__REGION="minio http://minio:9000"`, `XAYNET_S3__ACCESS_KEY`, ...), then boto3's
    usual chain (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, profiles)."""

    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None

    @classmethod
    def from_environment(cls, endpoint: str | None = None, environ: dict[str, str] | None = None) -> S3Access:
        env = dict(os.environ if environ is None else environ)
        region, env_endpoint = None, None
        if env.get("XAYNET_S3__REGION"):
            try:
                region, env_endpoint = parse_region(env["XAYNET_S3__REGION"])
            except ValueError as error:
                raise ModelSourceError(f"XAYNET_S3__REGION: {error}") from None
        return cls(
            endpoint=endpoint or env_endpoint,
            region=region,
            access_key=env.get("XAYNET_S3__ACCESS_KEY"),
            secret_key=env.get("XAYNET_S3__SECRET_ACCESS_KEY"),
        )


@dataclass
class FetchedModel:
    body: bytes
    model: GlobalModel
    source: str
    round_id: int | None = None
    checksum: str = ""  # recomputed: "sha256:<hex>"
    verified_against: str | None = None  # where the matching reference checksum came from
    mask_config: MaskConfig | None = None
    updates: int | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """What `xaynet model get` prints: round, length, mask config, checksum."""
        verified = f"matches {self.verified_against}" if self.verified_against else "no reference to compare"
        lines = [
            f"source:      {self.source}",
            f"round:       {self.round_id if self.round_id is not None else 'unknown'}",
            f"length:      {len(self.model)} weights ({len(self.body)} bytes)",
            f"mask config: {self.mask_config if self.mask_config else 'unknown'}",
            f"checksum:    {self.checksum} ({verified})",
        ]
        if self.updates is not None:
            lines.append(f"updates:     {self.updates} participants averaged")
        return lines + self.notes


def fetch_model(source: str, s3: S3Access | None = None, timeout: float = 30.0) -> FetchedModel:
    """Read and check the model at `source` (URL, s3:// URI, ConfigMap dump, file, or - for stdin)."""
    if source.startswith(("http://", "https://")):
        return _from_coordinator(source, timeout)
    if source.startswith("s3://"):
        return _from_s3(source, s3 or S3Access.from_environment())
    if source == "-":
        return _from_bytes(sys.stdin.buffer.read(), "stdin", None)
    path = Path(source)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelSourceError(
            f"{source}: no such file (expected a URL, s3://BUCKET/KEY or a file)"
        ) from None
    except IsADirectoryError:
        raise ModelSourceError(f"{source} is a directory: pass the model file itself") from None
    except PermissionError:
        raise ModelSourceError(f"{source}: permission denied") from None
    return _from_bytes(raw, source, path)


def to_array(fetched: FetchedModel, data_type: DataType | None = None) -> npt.NDArray[Any]:
    """The weights as the original client reads them (MASKING.md §10) in the model's data type."""
    chosen = data_type or (fetched.mask_config.data_type if fetched.mask_config else DataType.F32)
    try:
        return fetched.model.to_numpy(chosen)
    except XaynetError as error:
        raise ModelSourceError(f"the model does not convert to {chosen.name}: {error.message}") from None


def write_model(array: npt.NDArray[Any], output: Path | None, fmt: Format) -> None:
    """Write `.npy`, a JSON list, or raw little-endian float32 (to stdout when `output` is None)."""
    if fmt == "npy":
        data = _npy_bytes(array)
    elif fmt == "json":
        data = (json.dumps(array.tolist()) + "\n").encode()
    else:
        data = np.asarray(array, dtype="<f4").tobytes()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as error:
        raise ModelSourceError(f"cannot write {output}: {error.strerror or error}") from None


def _npy_bytes(array: npt.NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


# -- sources -------------------------------------------------------------------------------
def _decode(body: bytes, source: str) -> GlobalModel:
    try:
        return GlobalModel.from_bincode(body)
    except XaynetError as error:
        raise ModelSourceError(
            f"{source} is not a global model (bincode Vec<Ratio<BigInt>>): {error.message}"
        ) from None


def _check(fetched: FetchedModel, expected: str | None, where: str) -> None:
    if expected is None:
        return
    normalised = expected if expected.startswith("sha256:") else "sha256:" + expected
    if normalised != fetched.checksum:
        raise ModelSourceError(
            f"{fetched.source}: checksum mismatch: the bytes are {fetched.checksum}, {where} says "
            f"{normalised} — the model is corrupt or was replaced; do not use it"
        )
    fetched.verified_against = where


def _mask(text: str | None) -> MaskConfig | None:
    if not text:
        return None
    try:
        return MaskConfig.from_names(*text.replace("/", " ").split())
    except (TypeError, XaynetError):
        return None


def _from_bytes(raw: bytes, source: str, path: Path | None) -> FetchedModel:
    # Bincode first: text starts with a u64 count far beyond the body's length, so a ConfigMap
    # dump never decodes as a model (while a model of 123 weights starts with "{").
    try:
        model = GlobalModel.from_bincode(raw)
    except XaynetError:
        head = raw[:512].lstrip()
        is_text = b"\x00" not in head  # a model's u64 count has zero bytes
        if is_text and (head.startswith((b"{", b"apiVersion", b"kind:")) or b"\nkind:" in head):
            return _from_configmap(raw, source)
        model = _decode(raw, source)  # raises, naming the problem
    fetched = FetchedModel(raw, model, source, checksum=sha256_checksum(raw))
    if path is None:
        return fetched
    named = _EXPORT_NAME.search(path.name)
    if named:
        fetched.round_id = int(named.group(1))
    latest = path.with_name("latest.json")  # written next to the files by [model_export]
    if latest.is_file():
        try:
            info = json.loads(latest.read_text())
        except (OSError, ValueError):
            info = {}
        if isinstance(info, dict) and info.get("file") == path.name:
            fetched.round_id = int(info.get("round", fetched.round_id or 0))
            _check(fetched, str(info.get("checksum")), latest.name)
    return fetched


def _from_configmap(raw: bytes, source: str) -> FetchedModel:
    try:
        document = yaml.safe_load(raw)  # JSON is YAML
    except yaml.YAMLError as error:
        raise ModelSourceError(
            f"{source} looks like a ConfigMap dump but is not valid JSON/YAML: {error}"
        ) from None
    if not isinstance(document, dict) or document.get("kind") != "ConfigMap":
        raise ModelSourceError(
            f"{source} is neither a model file nor a ConfigMap (kubectl get configmap NAME -o yaml)"
        )
    name = (document.get("metadata") or {}).get("name", "?")
    encoded = (document.get("binaryData") or {}).get(CONFIGMAP_KEY)
    if not encoded:
        raise ModelSourceError(f"ConfigMap {name} has no binaryData.{CONFIGMAP_KEY} (not a global model)")
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ModelSourceError(f"ConfigMap {name}: binaryData.{CONFIGMAP_KEY} is not base64") from None
    where = f"ConfigMap {name}"
    fetched = FetchedModel(body, _decode(body, where), f"{source} ({where})", checksum=sha256_checksum(body))
    annotations = (document.get("metadata") or {}).get("annotations") or {}
    data = document.get("data") or {}
    round_text = annotations.get("xaynet.dev/round") or data.get("round")
    if round_text is not None and str(round_text).isdigit():
        fetched.round_id = int(round_text)
    _check(fetched, annotations.get("xaynet.dev/checksum") or data.get("checksum"), f"the {where} annotation")
    return fetched


def _http_get(url: str, timeout: float) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ModelSourceError(f"cannot reach {url}: {reason}") from None


def _from_coordinator(url: str, timeout: float) -> FetchedModel:
    base = url.rstrip("/").removesuffix("/model").removesuffix("/status")
    for _ in range(3):  # a new model can be published between the two requests: read again
        code, headers, body = _http_get(base + "/model", timeout)
        if code == 204:
            raise ModelSourceError(f"{base} has no global model yet (no round has completed)")
        if code != 200:
            raise ModelSourceError(f"{base}/model answered HTTP {code}: is this a xaynet coordinator?")
        status_code, _, status_body = _http_get(base + "/status", timeout)
        status: dict[str, Any] = {}
        if status_code == 200:
            try:
                status = json.loads(status_body)
            except ValueError:
                status = {}
        round_header = {k.lower(): v for k, v in headers.items()}.get("x-xaynet-round")
        round_id = int(round_header) if round_header and round_header.isdigit() else None
        published = status.get("global_model") or {}
        if round_id is not None and published and published.get("round_id") != round_id:
            continue
        fetched = FetchedModel(body, _decode(body, base + "/model"), base, round_id, sha256_checksum(body))
        params = status.get("mask_config")
        fetched.mask_config = _mask(params if isinstance(params, str) else None)
        _check(fetched, published.get("checksum"), "the coordinator's /status")
        return fetched
    raise ModelSourceError(f"{base} publishes new models faster than they can be read; try again")


def _from_s3(uri: str, access: S3Access) -> FetchedModel:
    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as error:
        raise ModelSourceError(str(error)) from None
    client = s3_client(access.endpoint, access.region, access.access_key, access.secret_key)
    try:
        answer = client.get_object(Bucket=bucket, Key=key)
        body = bytes(answer["Body"].read())
    except Exception as error:  # botocore raises many types: described in one line
        code = error_code(error)
        if code in ("NoSuchKey", "404"):
            raise ModelSourceError(f"{uri} does not exist (objects are named <round>_<hex seed>)") from None
        if code == "NoSuchBucket":
            raise ModelSourceError(f"{uri}: bucket {bucket} does not exist") from None
        where = access.endpoint or "AWS S3 (set --s3-endpoint for MinIO and other servers)"
        raise ModelSourceError(f"{uri}: {describe_error(error, where)}") from None
    fetched = FetchedModel(body, _decode(body, uri), uri, checksum=sha256_checksum(body))
    metadata: dict[str, str] = answer.get("Metadata") or {}
    try:
        described = ModelMetadata.from_s3(metadata)
    except ValueError:
        original = _ORIGINAL_KEY.match(key.rsplit("/", 1)[-1])
        if original:  # written by the original XayNet: the key is all it says
            fetched.round_id = int(original.group(1))
        fetched.notes.append(
            "note:        the object has no xaynet metadata (written by the original XayNet?)"
        )
        return fetched
    fetched.round_id = described.round_id
    fetched.mask_config = _mask(described.mask_config)
    fetched.updates = described.updates
    _check(fetched, described.checksum, "the object's metadata")
    if described.model_length != len(fetched.model):
        raise ModelSourceError(
            f"{uri}: the metadata says {described.model_length} weights, "
            f"the object holds {len(fetched.model)}"
        )
    return fetched


def get_model(
    source: str,
    *,
    output: str | None,
    fmt: str | None,
    data_type: str | None,
    s3_endpoint: str | None,
    timeout: float = 30.0,
) -> list[str]:
    """`xaynet model get`: fetch, check, convert, write; return the lines to print."""
    chosen = _format(fmt, output)
    kind: DataType | None = None
    if data_type:
        try:
            kind = DataType.from_name(data_type)
        except XaynetError as error:
            raise ModelSourceError(f"--data-type: {error.message}") from None
    fetched = fetch_model(source, S3Access.from_environment(s3_endpoint), timeout)
    array = to_array(fetched, kind)
    target = None if output == "-" else Path(output or f"model.{chosen}")
    write_model(array, target, chosen)
    where = "stdout" if target is None else str(target)
    return [*fetched.summary(), f"written:     {where} ({chosen}, {array.dtype}, {len(array)} values)"]


def _format(fmt: str | None, output: str | None) -> Format:
    by_suffix: dict[str, Format] = {".json": "json", ".f32": "f32", ".raw": "f32", ".bin": "f32"}
    for known in FORMATS:
        if fmt == known:
            return known
    if fmt is not None:
        raise ModelSourceError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    suffix = Path(output).suffix.lower() if output and output != "-" else ""
    return by_suffix.get(suffix, "npy")
