"""The FederatedRound spec as a typed model, and its translation into coordinator settings.

The CRD (crds/federatedround.yaml) and this model must agree field by field;
`tests/operator/test_spec.py` checks names, types, defaults and bounds against each other.
Validation happens twice on purpose: the CRD schema lets a real API server refuse most
mistakes at `kubectl apply`, and this model (plus the coordinator's own consistency rules)
catches everything else — including on API servers that do not validate (like the tests').
"""

from __future__ import annotations

import re
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xaynet.coordinator.settings import Settings


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=_camel, populate_by_name=True, extra="forbid", frozen=True)


class MaskSpec(_Model):
    group_type: Literal["Integer", "Prime", "Power2"] = "Prime"
    data_type: Literal["F32", "F64", "I32", "I64"] = "F32"
    bound_type: Literal["B0", "B2", "B4", "B6", "Bmax"] = "B0"
    model_type: Literal["M3", "M6", "M9", "M12"] = "M3"


class PetSpec(_Model):
    sum_probability: float = Field(0.5, gt=0, lt=1)
    update_probability: float = Field(0.9, gt=0, le=1)
    min_sum_count: int = Field(1, ge=1)
    max_sum_count: int = Field(100, ge=1)
    min_update_count: int = Field(3, ge=3)
    max_update_count: int = Field(1000, ge=3)
    min_sum2_count: int = Field(1, ge=1)
    max_sum2_count: int = Field(100, ge=1)
    min_sum_time: float = Field(5, ge=0)
    max_sum_time: float = Field(3600, ge=0)
    min_update_time: float = Field(10, ge=0)
    max_update_time: float = Field(3600, ge=0)
    min_sum2_time: float = Field(5, ge=0)
    max_sum2_time: float = Field(3600, ge=0)


_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class CoordinatorSpec(_Model):
    image: str | None = Field(None, max_length=512)  # None: `children.coordinator.default_image()`
    # 1 active coordinator + at most 1 hot standby (docs/high-availability.md)
    replicas: int = Field(1, ge=0, le=2)
    log_filter: str = Field("info", max_length=1024)
    resources: dict[str, Any] | None = None


class SecretRef(_Model):
    name: str = Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)
    key: str = Field("password", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class StorageSpec(_Model):
    """A PersistentVolumeClaim for the managed Redis (else an emptyDir that dies with the pod)."""

    size: str = Field(max_length=64, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    storage_class_name: str | None = Field(None, max_length=253, pattern=_DNS_SUBDOMAIN)


class RedisSpec(_Model):
    mode: Literal["Managed", "External"] = "Managed"
    url: str | None = Field(None, max_length=2048, pattern=r"^rediss?://[^@/ ]+(/[0-9]+)?$")
    image: str = Field("redis:7-alpine", max_length=512)
    password_secret_ref: SecretRef | None = None
    storage: StorageSpec | None = None
    resources: dict[str, Any] | None = None


class MetricsSpec(_Model):
    service_monitor: bool = True


class S3CredentialsRef(_Model):
    name: str = Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)
    access_key_key: str = Field("accessKey", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
    secret_key_key: str = Field("secretKey", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class S3ExportSpec(_Model):
    """The coordinator's `[s3]` archive: every global model as s3://bucket/<round>_<hex seed>."""

    endpoint: str | None = Field(None, max_length=2048, pattern=r"^https?://[^\s]+$")
    region: str = Field("us-east-1", min_length=1, max_length=64, pattern=r"^[-a-z0-9]+$")
    bucket: str = Field(
        "global-models", min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$"
    )
    credentials_secret_ref: S3CredentialsRef


class ModelExportSpec(_Model):
    config_map: bool = True
    max_config_map_bytes: int = Field(900_000, ge=1024, le=1_000_000)
    s3: S3ExportSpec | None = None


class FederatedRoundSpec(_Model):
    model_length: int = Field(ge=1, le=10_000_000)
    mask: MaskSpec = MaskSpec()
    pet: PetSpec = PetSpec()
    rounds: int = Field(0, ge=0)
    coordinator: CoordinatorSpec = CoordinatorSpec()
    redis: RedisSpec = RedisSpec()
    metrics: MetricsSpec = MetricsSpec()
    model_export: ModelExportSpec = ModelExportSpec()
    suspend: bool = False
    ttl_seconds_after_finished: int | None = Field(None, ge=0)


# Fields whose change would break a running round: refused, never rolled out.
UNSAFE_FIELDS = ("modelLength", "mask", "redis")


class InvalidSpecError(Exception):
    """A spec that cannot be run; `problems` name the fields (`spec.pet.sumProbability: ...`)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_spec(raw: dict[str, Any], name: str | None = None) -> FederatedRoundSpec:
    """Parse and check a spec completely, or raise `InvalidSpecError` naming every field at fault.

    With `name`, the round's name is checked too (the CRD's CEL rules, which old and emulated
    API servers do not run).
    """
    name_problems = round_name_problems(name) if name is not None else []
    try:
        spec = FederatedRoundSpec.model_validate(raw)
    except ValidationError as error:
        raise InvalidSpecError(name_problems + [_describe(e) for e in error.errors()]) from None
    problems = list(name_problems)
    if spec.redis.mode == "External" and not spec.redis.url:
        problems.append("spec.redis.url: required when spec.redis.mode is External")
    if spec.redis.mode == "Managed" and (spec.redis.url or spec.redis.password_secret_ref):
        problems.append("spec.redis.url, spec.redis.passwordSecretRef: for mode External only")
    if spec.redis.mode == "External" and (spec.redis.storage or spec.redis.resources):
        problems.append("spec.redis.storage, spec.redis.resources: for mode Managed only")
    if problems:
        raise InvalidSpecError(problems)
    try:
        coordinator_settings(spec, namespace="check", redis_url=None)
    except ValidationError as error:
        raise InvalidSpecError([_settings_problem(e) for e in error.errors()]) from None
    return spec


# `<name>-coordinator` must stay a Service name (a DNS-1035 label of at most 63 characters).
MAX_ROUND_NAME = 63 - len("-coordinator")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def round_name_problems(name: str) -> list[str]:
    """The CRD's CEL rules on metadata.name, for API servers that do not run CEL."""
    problems = []
    if len(name) > MAX_ROUND_NAME:
        problems.append(
            f"metadata.name: at most {MAX_ROUND_NAME} characters ('{name}-coordinator' names a Service)"
        )
    if not _DNS_LABEL.match(name):
        problems.append(
            "metadata.name: must start with a lowercase letter and contain only lowercase letters, "
            "digits and '-' (it names the round's Services)"
        )
    return problems


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in ("spec", *error["loc"]))
    return f"{where}: {error['msg']}"


_SETTINGS_TO_SPEC = {f"pet.{name}": f"spec.pet.{_camel(name)}" for name in PetSpec.model_fields} | {
    "pet.sum": "spec.pet.sumProbability",
    "pet.update": "spec.pet.updateProbability",
}


def _settings_problem(error: Any) -> str:
    """The coordinator's consistency message, with its keys renamed to the spec's fields."""
    message = str(error["msg"]).removeprefix("Value error, ")
    for key in sorted(_SETTINGS_TO_SPEC, key=len, reverse=True):
        message = message.replace(key, _SETTINGS_TO_SPEC[key])
    return message.replace("mask.model_type", "spec.mask.modelType")


def coordinator_settings(spec: FederatedRoundSpec, *, namespace: str, redis_url: str | None) -> Settings:
    """The coordinator's settings for this round (validated by the coordinator's own rules)."""
    pet = spec.pet
    document: dict[str, Any] = {
        "log": {"filter": spec.coordinator.log_filter},
        "api": {"bind_address": "0.0.0.0:8081"},
        "pet": {
            "sum": pet.sum_probability,
            "update": pet.update_probability,
            **{
                name: getattr(pet, name)
                for name in PetSpec.model_fields
                if name not in ("sum_probability", "update_probability")
            },
            # `rounds: N` holds with the operator down too: the coordinator itself takes no
            # message after the N-th global model (0 = unlimited).
            "max_rounds": spec.rounds,
        },
        "mask": {
            "group_type": spec.mask.group_type,
            "data_type": spec.mask.data_type,
            "bound_type": spec.mask.bound_type,
            "model_type": spec.mask.model_type,
        },
        "model": {"length": spec.model_length},
        "restore": {"enable": True},
        "model_export": {"directory": "/models", "keep": 10},
    }
    if redis_url is not None:
        document["redis"] = {"url": redis_url, "namespace": namespace}
    s3 = spec.model_export.s3
    if s3 is not None:  # the keys come from the Secret, as environment variables
        region = [s3.region, s3.endpoint] if s3.endpoint else [s3.region]
        document["s3"] = {"region": region, "buckets": {"global_models": s3.bucket}}
    return Settings.model_validate(document)


def render_config(settings: Settings) -> str:
    """config.toml in the original format; the Redis URL (with its password) comes from the env."""
    document = settings.model_dump(mode="json", exclude_none=True, exclude={"metrics"})
    document.pop("redis", None)
    if settings.redis is not None:
        document["redis"] = {"namespace": settings.redis.namespace, "url": "redis://from-env"}
    return tomli_w.dumps(document)
