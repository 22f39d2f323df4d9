"""Coordinator settings: the original `config.toml` format, environment overrides, validation.

The file format is XayNet v0.11.0's (SETTINGS.md): `[api]`, `[pet]`, `[mask]`, `[model]`,
`[log]`, `[redis]`, `[metrics.influxdb]`, `[restore]`, `[s3]`. Environment variables
`XAYNET_<SECTION>__<KEY>` override the file (also the later `XAYNET__SECTION__KEY` form).
What differs from the original, on purpose:

* `[redis]` is optional: without it the coordinator keeps its state in memory.
* Sections we do not implement (`[metrics.influxdb]`, `[s3]`) are accepted and reported.
* Inconsistent values are refused at start with a message naming the keys, including
  the original's silent traps (`max_update_count` above what the model type can aggregate).
* Our additions live in their own keys: `[redis] namespace`, `[model_export] directory`,
  `[multipart]` limits.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xaynet.core.mask.config import MaskConfig, MaskConfigPair

ENV_PREFIX = "XAYNET_"
MIN_SUM_COUNT = 1
MIN_UPDATE_COUNT = 3


class SettingsError(Exception):
    """Settings that cannot be loaded or do not make sense; the message names the keys."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class ApiSettings(_Section):
    bind_address: str = "127.0.0.1:8081"
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    tls_client_auth: Path | None = None

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


class MaskSettings(_Section):
    group_type: str = "Prime"
    data_type: str = "F32"
    bound_type: str = "B0"
    model_type: str = "M3"

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
    namespace: str = Field("default", pattern=r"^[A-Za-z0-9._-]{1,128}$")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://", "redis+unix://")):
            raise ValueError(f"{value!r} is not a Redis URL (redis://[user][:password@]host[:port][/db])")
        return value


class RestoreSettings(_Section):
    enable: bool = True


class ModelExportSettings(_Section):
    directory: Path | None = None
    keep: int = Field(0, ge=0, description="how many round files to keep; 0 keeps all")


class MultipartSettings(_Section):
    max_buffer_bytes: int = Field(256 * 1024 * 1024, gt=0)
    max_open_messages: int = Field(10_000, gt=0)
    ttl_seconds: float = Field(600, gt=0)


class Settings(BaseModel):
    """All coordinator settings, validated."""

    model_config = ConfigDict(extra="allow", frozen=True)

    api: ApiSettings = ApiSettings()
    pet: PetSettings = PetSettings()
    mask: MaskSettings = MaskSettings()
    model: ModelSettings
    log: LogSettings = LogSettings()
    redis: RedisSettings | None = None
    restore: RestoreSettings = RestoreSettings()
    model_export: ModelExportSettings = ModelExportSettings()
    multipart: MultipartSettings = MultipartSettings()
    metrics: dict[str, Any] | None = None
    s3: dict[str, Any] | None = None

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
        if self.s3:
            found.append("[s3] (global models are written to [model_export] directory)")
        if self.api.tls_client_auth:
            found.append("api.tls_client_auth (mutual TLS; the original never enabled it either)")
        return found

    def unknown_keys(self) -> list[str]:
        """Keys present in the file that no section defines (typos, usually)."""
        unknown = [f"{k}" for k in (self.model_extra or {})]
        for name in ("api", "pet", "mask", "model", "log", "redis", "restore", "model_export", "multipart"):
            section = getattr(self, name)
            if isinstance(section, BaseModel):
                unknown += [f"{name}.{k}" for k in (section.model_extra or {})]
        return sorted(unknown)


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


def environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`XAYNET_SECTION__KEY=value` (and `XAYNET__SECTION__KEY`) as a nested dict."""
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().lstrip("_").split("__")
        if len(path) < 2 or not all(path):
            continue  # e.g. XAYNET_CLIENT, the wheel's log filter: not a settings key
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
    return tree


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: Path | str | None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read a TOML file (or nothing), apply environment overrides, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise SettingsError(f"settings file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
    data = _merge(data, environment_overrides(os.environ if environ is None else environ))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, path)) from None


def _explain(exc: ValidationError, path: Path | str | None) -> str:
    lines = [f"invalid settings{f' in {path}' if path else ''}:"]
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {where}: {message}" if where != "(top level)" else f"  {message}")
    return "\n".join(lines)
