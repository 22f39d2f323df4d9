"""Coordinator settings: the original `config.toml` format, environment overrides, validation.

The file format is XayNet v0.11.0's (SETTINGS.md): `[api]`, `[pet]`, `[mask]`, `[model]`,
`[log]`, `[redis]`, `[metrics.influxdb]`, `[restore]`, `[s3]`. Environment variables
`XAYNET_<SECTION>__<KEY>` override the file (also the later `XAYNET__SECTION__KEY` form).
What differs from the original, on purpose:

* `[redis]` is optional: without it the coordinator keeps its state in memory.
* Every key of v0.11.0 is known; the ones we do not implement (`[metrics.influxdb]`,
  `api.tls_client_auth`, ...) are accepted and reported. A key or section nobody defines is a
  typo and stops the start with a "did you mean" (the original ignored it silently).
* The original's files start unchanged (`load_settings` adapts them, one note per difference):
  `max_update_count` above what the model type can aggregate is capped to it, and the
  `tls_*` paths do nothing unless `[api] tls = true` (the original's images ignored them).
  Settings built directly (the operator's) get no such leniency: they are refused.
* Other inconsistent values are refused at start with a message naming the keys.
* Our additions live in their own keys: `[api] tls`, `[redis] namespace`,
  `[model_export] directory`, `[multipart]` limits, `[log] format`.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import ssl
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from xaynet.core.errors import InvalidMaskConfigError
from xaynet.core.mask.config import BoundType, DataType, GroupType, MaskConfig, MaskConfigPair, ModelType
from xaynet.core.s3 import check_bucket_name, parse_region

ENV_PREFIX = "XAYNET_"
MIN_SUM_COUNT = 1
MIN_UPDATE_COUNT = 3


class SettingsError(Exception):
    """Settings that cannot be loaded or do not make sense; the message names the keys."""


class _Section(BaseModel):
    # A key no section defines is a typo: refused (with a "did you mean", see `_explain`).
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiSettings(_Section):
    bind_address: str = "127.0.0.1:8081"
    tls: bool = False  # ours: the original's tls_* lines alone must not switch HTTPS on
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_client_auth: Path | None = None
    # Ours: a connection has this long to send a request's headers (also the idle keep-alive
    # time); a body gets this long plus 1 s per 64 KiB. Slow or stuck clients are cut off.
    read_timeout: float = Field(30, gt=0)

    @model_validator(mode="after")
    def _tls_files(self) -> ApiSettings:
        if not self.tls:
            if self.tls_certificate is not None or self.tls_key is not None:
                raise ValueError("api.tls_certificate/tls_key are set but api.tls is not: set api.tls = true")
            return self
        certificate, key = self.tls_certificate, self.tls_key
        for name, path in (("api.tls_certificate", certificate), ("api.tls_key", key)):
            if path is None:
                raise ValueError(f"api.tls = true needs {name} (a PEM file)")
            if not path.is_file():
                raise ValueError(f"{name}: {path} does not exist or is not a file")
        assert certificate is not None  # checked just above
        assert key is not None
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certificate, key)
        except (ssl.SSLError, OSError) as error:
            raise ValueError(
                f"api.tls_certificate {self.tls_certificate} and api.tls_key {self.tls_key} do not "
                f"form a certificate and its private key ({getattr(error, 'reason', None) or error})"
            ) from None
        return self

    @field_validator("bind_address")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not an IP:port socket address")
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError(f"{host!r} is not an IP address (the original takes IP:port)") from None
        return value

    @property
    def host(self) -> str:
        return self.bind_address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind_address.rpartition(":")[2])


class PetSettings(_Section):
    min_sum_count: int = Field(1, ge=0)
    max_sum_count: int = Field(100, ge=0)
    min_update_count: int = Field(3, ge=0)
    max_update_count: int = Field(1000, ge=0)
    min_sum2_count: int = Field(1, ge=0)
    max_sum2_count: int = Field(100, ge=0)
    min_sum_time: float = Field(5, ge=0)
    max_sum_time: float = Field(3600, ge=0)
    min_update_time: float = Field(10, ge=0)
    max_update_time: float = Field(3600, ge=0)
    min_sum2_time: float = Field(5, ge=0)
    max_sum2_time: float = Field(3600, ge=0)
    sum: float = 0.5
    update: float = 0.9
    # Ours: stop after this many global models (0 = never). The count is kept in the store,
    # so a restarted coordinator does not run extra rounds (the operator's `rounds: N`).
    max_rounds: int = Field(0, ge=0)


# The names as the config files spell them (the enums' own names are upper case).
MASK_SPELLINGS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    "group_type": (GroupType, ("Integer", "Prime", "Power2")),
    "data_type": (DataType, ("F32", "F64", "I32", "I64")),
    "bound_type": (BoundType, ("B0", "B2", "B4", "B6", "Bmax")),
    "model_type": (ModelType, ("M3", "M6", "M9", "M12")),
}


class MaskSettings(_Section):
    group_type: str = "Prime"
    data_type: str = "F32"
    bound_type: str = "B0"
    model_type: str = "M3"

    @field_validator("group_type", "data_type", "bound_type", "model_type")
    @classmethod
    def _spelled_as_in_the_file(cls, value: str, info: Any) -> str:
        kind, spellings = MASK_SPELLINGS[info.field_name]
        try:
            kind.from_name(value)
        except InvalidMaskConfigError:
            choices = ", ".join(f'"{name}"' for name in spellings)
            guess = difflib.get_close_matches(value, spellings, n=1, cutoff=0.5)
            hint = f'; did you mean "{guess[0]}"?' if guess else ""
            raise ValueError(f"{value!r} is not one of {choices}{hint}") from None
        return value

    @property
    def config(self) -> MaskConfig:
        return MaskConfig.from_names(self.group_type, self.data_type, self.bound_type, self.model_type)


class ModelSettings(_Section):
    length: int = Field(ge=0, lt=2**32)


class LogSettings(_Section):
    filter: str = "info"
    format: Literal["json", "text"] = "json"


class RedisSettings(_Section):
    url: str
    # Apart from the URL, so any character works (`@`, `:` or `/` would break a URL); the
    # operator passes a Secret's key here. When unset, the URL's own password (if any) is used.
    password: SecretStr | None = None
    namespace: str = Field("default", pattern=r"^[A-Za-z0-9._-]{1,128}$")
    # One active coordinator per namespace (coordinator/store/lease.py): a standby takes
    # over within about this time after the active one dies.
    lease_ttl_seconds: float = Field(6.0, ge=1, le=300)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://", "redis+unix://")):
            raise ValueError(f"{value!r} is not a Redis URL (redis://[user][:password@]host[:port][/db])")
        return value


class RestoreSettings(_Section):
    enable: bool = True


class InfluxDbSettings(_Section):
    """The original's metrics sink; accepted and reported, we serve GET /metrics instead."""

    url: str | None = None
    db: str | None = None


class MetricsSettings(_Section):
    influxdb: InfluxDbSettings | None = None


class S3BucketSettings(_Section):
    global_models: str = "global-models"

    @field_validator("global_models")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        return check_bucket_name(value)


class S3Settings(_Section):
    """The original's model archive keys (v0.11.0 `[s3]`), used by coordinator/archive.py."""

    access_key: str | None = None
    secret_access_key: str | None = None
    region: list[str] | str | None = None  # ["name", "endpoint"]; from the env "name endpoint"
    buckets: S3BucketSettings = S3BucketSettings()
    # Ours: while S3 is unreachable, models wait in the round's store (Redis); at most this
    # many, the oldest dropped first, so a long outage cannot fill the store the round needs.
    max_queued: int = Field(100, ge=1)

    @field_validator("region")
    @classmethod
    def _region(cls, value: list[str] | str | None) -> list[str] | str | None:
        parse_region(value)  # raises ValueError naming the expected forms
        return value


class ModelExportSettings(_Section):
    directory: Path | None = None
    keep: int = Field(0, ge=0, description="how many round files to keep; 0 keeps all")


class MultipartSettings(_Section):
    max_buffer_bytes: int = Field(256 * 1024 * 1024, gt=0)
    max_open_messages: int = Field(10_000, gt=0)
    ttl_seconds: float = Field(600, gt=0)


class Settings(BaseModel):
    """All coordinator settings, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: ApiSettings = ApiSettings()
    pet: PetSettings = PetSettings()
    mask: MaskSettings = MaskSettings()
    model: ModelSettings
    log: LogSettings = LogSettings()
    redis: RedisSettings | None = None
    restore: RestoreSettings = RestoreSettings()
    model_export: ModelExportSettings = ModelExportSettings()
    multipart: MultipartSettings = MultipartSettings()
    metrics: MetricsSettings | None = None
    s3: S3Settings | None = None
    _adaptations: list[str] = PrivateAttr(default_factory=list)

    @field_validator("mask")
    @classmethod
    def _mask(cls, value: MaskSettings) -> MaskSettings:
        value.config  # noqa: B018 - raises InvalidMaskConfigError (a ValueError) for unknown names
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        problems = _inconsistencies(self.pet, self.mask.config)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def mask_configs(self) -> MaskConfigPair:
        return MaskConfigPair.same(self.mask.config)

    def unimplemented_sections(self) -> list[str]:
        """Sections accepted for compatibility that this coordinator does not act on."""
        found = []
        if self.metrics:
            found.append("[metrics] (use GET /metrics, Prometheus format)")
        if self.api.tls_client_auth:
            found.append("api.tls_client_auth (mutual TLS; the original never enabled it either)")
        return found

    def adaptations(self) -> list[str]:
        """What `load_settings` changed to let an original v0.11.0 file start (one per difference)."""
        return list(self._adaptations)

    def warnings(self) -> list[str]:
        """Everything worth one warning at start: adaptations, then unimplemented sections."""
        return self.adaptations() + [
            f"settings accepted but not implemented: {section}" for section in self.unimplemented_sections()
        ]


def _inconsistencies(pet: PetSettings, mask: MaskConfig) -> list[str]:
    problems = []
    if not MIN_SUM_COUNT <= pet.min_sum_count <= pet.max_sum_count:
        problems.append(
            f"pet.min_sum_count ({pet.min_sum_count}) must be between {MIN_SUM_COUNT} and "
            f"pet.max_sum_count ({pet.max_sum_count})"
        )
    if not MIN_UPDATE_COUNT <= pet.min_update_count <= pet.max_update_count:
        problems.append(
            f"pet.min_update_count ({pet.min_update_count}) must be between {MIN_UPDATE_COUNT} and "
            f"pet.max_update_count ({pet.max_update_count}); fewer than {MIN_UPDATE_COUNT} updates "
            "would let the sum reveal an individual model"
        )
    if not 1 <= pet.min_sum2_count <= pet.max_sum2_count:
        problems.append(
            f"pet.min_sum2_count ({pet.min_sum2_count}) must be between 1 and "
            f"pet.max_sum2_count ({pet.max_sum2_count})"
        )
    if pet.max_sum2_count > pet.max_sum_count:
        problems.append(
            f"pet.max_sum2_count ({pet.max_sum2_count}) cannot exceed pet.max_sum_count "
            f"({pet.max_sum_count}): only sum participants send sum2 messages"
        )
    for phase in ("sum", "update", "sum2"):
        low, high = getattr(pet, f"min_{phase}_time"), getattr(pet, f"max_{phase}_time")
        if low > high:
            problems.append(f"pet.min_{phase}_time ({low:g}) exceeds pet.max_{phase}_time ({high:g})")
    if not 0 < pet.sum < 1:
        problems.append(f"pet.sum ({pet.sum}) must be a probability strictly between 0 and 1")
    if not 0 < pet.update <= 1:
        problems.append(f"pet.update ({pet.update}) must be a probability in (0, 1]")
    if pet.max_update_count > mask.max_models:
        problems.append(
            f"pet.max_update_count ({pet.max_update_count}) exceeds what mask.model_type "
            f"{mask.model_type.name} can aggregate ({mask.max_models}); lower it or choose a larger "
            "model type"
        )
    if pet.max_sum_count > mask.max_models:
        problems.append(
            f"pet.max_sum_count ({pet.max_sum_count}) exceeds mask.model_type {mask.model_type.name} "
            f"({mask.max_models}): a sum participant could not aggregate that many masks"
        )
    return problems


def _environment_paths(environ: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    """The settings path each `XAYNET_SECTION__KEY` (or `XAYNET__SECTION__KEY`) variable names."""
    paths: dict[tuple[str, ...], str] = {}
    for name in environ:
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = tuple(name[len(ENV_PREFIX) :].lower().lstrip("_").split("__"))
        if len(path) >= 2 and all(path):  # XAYNET_CLIENT, the wheel's log filter, is not a key
            paths[path] = name
    return paths


def environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`XAYNET_SECTION__KEY=value` (and `XAYNET__SECTION__KEY`) as a nested dict."""
    tree: dict[str, Any] = {}
    for path, name in _environment_paths(environ).items():
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = environ[name]
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist") from None
    except IsADirectoryError:
        inside = path / "config.toml"
        hint = f"; did you mean -c {inside}?" if inside.is_file() else ": pass the config.toml file itself"
        raise SettingsError(f"{path} is a directory, not a settings file{hint}") from None
    except PermissionError:
        raise SettingsError(f"settings file {path} is not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise SettingsError(f"settings file {path} is not a text (TOML) file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None


def _as_bool(value: Any) -> bool | None:
    try:
        return TypeAdapter(bool).validate_python(value)
    except ValidationError:
        return None  # validation will name it


def _adapt_original(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Let a v0.11.0 file start unchanged: change what the original did in effect, say so."""
    notes: list[str] = []
    api = data.get("api")
    if isinstance(api, dict) and not _as_bool(api.get("tls", False)):
        ignored = [key for key in ("tls_certificate", "tls_key") if api.get(key) is not None]
        if ignored:
            paths = ", ".join(f"api.{key} = {api[key]}" for key in ignored)
            notes.append(
                f"{paths} ignored: HTTPS is off, as in the original's published images; to serve "
                "HTTPS set [api] tls = true (or XAYNET_API__TLS=true)"
            )
            data = {**data, "api": {k: v for k, v in api.items() if k not in ignored}}
    pet, mask = data.get("pet"), data.get("mask", {})
    if isinstance(pet, dict) and "max_update_count" in pet and isinstance(mask, dict):
        try:
            config = MaskSettings.model_validate(mask).config
            requested = int(pet["max_update_count"])
        except (ValidationError, ValueError, TypeError):
            return data, notes  # validation names the problem
        if requested > config.max_models:
            notes.append(
                f"pet.max_update_count = {requested} is more than mask.model_type "
                f"{config.model_type.name} can aggregate: capped to {config.max_models} (the "
                "original refused the updates past it)"
            )
            data = {**data, "pet": {**pet, "max_update_count": config.max_models}}
    return data, notes


def load_settings(path: Path | str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read a TOML file (or nothing), apply environment overrides, adapt an original file, validate."""
    environ = os.environ if environ is None else environ
    data = _read(Path(path)) if path is not None else {}
    data = _merge(data, environment_overrides(environ))
    data, notes = _adapt_original(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, path, _environment_paths(environ))) from None
    settings._adaptations.extend(notes)
    return settings


def _fields_at(loc: tuple[str | int, ...]) -> list[str]:
    """The keys the settings model defines at `loc` (a section path), for "did you mean"."""
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        annotation = field.annotation
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _unknown(loc: tuple[str | int, ...]) -> str:
    *section, key = (str(part) for part in loc)
    known = _fields_at(tuple(section))
    guess = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not section:
        hint = f"; did you mean [{guess[0]}]?" if guess else f"; sections: {', '.join(known)}"
        return f"unknown section [{key}]{hint}"
    where = ".".join(section)
    hint = f"; did you mean {where}.{guess[0]}?" if guess else f"; [{where}] has {', '.join(known)}"
    return f"unknown key {where}.{key}{hint}"


def _explain(exc: ValidationError, path: Path | str | None, from_env: Mapping[tuple[str, ...], str]) -> str:
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        variable = from_env.get(tuple(str(part) for part in loc))
        origin = f" (from the environment variable {variable})" if variable else ""
        if error["type"] == "extra_forbidden":
            problems.append(_unknown(loc) + origin)
            continue
        where = ".".join(str(p) for p in loc)
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}{origin}: {message}" if where else message)
    source = f"{path}: " if path else ""
    if len(problems) == 1:
        return f"{source}{problems[0]}"
    return "\n".join([f"{source}{len(problems)} problems:", *(f"  {p}" for p in problems)])
