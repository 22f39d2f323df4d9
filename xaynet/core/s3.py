"""The model archive's layout in S3-compatible storage, shared by the writer and the readers.

The coordinator writes one object per global model, named as XayNet v0.11.0 named it
(STORAGE.md §2.1): bucket `global-models` by default, key `<round id>_<hex round seed>`, body
the bincode `/model` bytes. We add what the original left out — a checksum and the round's
metadata as S3 user metadata — so a reader can check what it downloaded and convert it without
asking the coordinator (which may be gone). Everything here is plain data plus one boto3 client
factory, so the coordinator and `xaynet model get` cannot disagree about names.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_BUCKET = "global-models"
CHECKSUM_PREFIX = "sha256:"


def object_key(round_id: int, round_seed: bytes) -> str:
    """The original's global model id: `"<round id>_<lower-case hex of the 32-byte seed>"`."""
    return f"{round_id}_{round_seed.hex()}"


def sha256_checksum(body: bytes) -> str:
    """`sha256:<hex>`, the form `/status`, the ConfigMap and the object metadata use."""
    return CHECKSUM_PREFIX + hashlib.sha256(body).hexdigest()


def sha256_base64(body: bytes) -> str:
    """The same digest as S3's `x-amz-checksum-sha256` wants it (the server then verifies it)."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


@dataclass(frozen=True)
class ModelMetadata:
    """What an archived model says about itself (S3 user metadata, `x-amz-meta-xaynet-*`)."""

    round_id: int
    round_seed: bytes
    checksum: str  # "sha256:<hex>"
    mask_config: str  # "Prime/F32/B0/M3", as /status shows it
    model_length: int
    updates: int  # how many update participants the model averages

    @property
    def key(self) -> str:
        return object_key(self.round_id, self.round_seed)

    def to_s3(self) -> dict[str, str]:
        return {
            "xaynet-round": str(self.round_id),
            "xaynet-round-seed": self.round_seed.hex(),
            "xaynet-checksum": self.checksum,
            "xaynet-mask-config": self.mask_config,
            "xaynet-model-length": str(self.model_length),
            "xaynet-updates": str(self.updates),
        }

    @classmethod
    def from_s3(cls, metadata: dict[str, str]) -> ModelMetadata:
        """Parse an object's user metadata; `ValueError` names what is missing or malformed."""
        try:
            return cls(
                round_id=int(metadata["xaynet-round"]),
                round_seed=bytes.fromhex(metadata["xaynet-round-seed"]),
                checksum=metadata["xaynet-checksum"],
                mask_config=metadata["xaynet-mask-config"],
                model_length=int(metadata["xaynet-model-length"]),
                updates=int(metadata["xaynet-updates"]),
            )
        except KeyError as missing:
            raise ValueError(
                f"the object has no {missing.args[0]} metadata (not written by xaynet?)"
            ) from None
        except ValueError as error:
            raise ValueError(f"the object's xaynet metadata is malformed: {error}") from None


def parse_region(value: list[str] | str | None) -> tuple[str | None, str | None]:
    """The original's `[s3] region` → (region name, endpoint URL or None for AWS itself).

    `["eu-west-1"]` is an AWS region; `["minio", "http://minio:9000"]` a custom name and
    endpoint; from the environment the same as one string, `"minio http://minio:9000"`.
    """
    if value is None:
        return None, None
    parts = value.split() if isinstance(value, str) else list(value)
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 2:
        name, endpoint = parts
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"the endpoint {endpoint!r} must be an http:// or https:// URL")
        return name, endpoint.rstrip("/")
    raise ValueError(
        f'{value!r} is neither an AWS region code ("eu-west-1") nor a name and an endpoint '
        '(["minio", "http://minio:9000"])'
    )


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket_name(name: str) -> str:
    """S3's bucket-name rule, as the original checked `[s3.buckets] global_models`."""
    if not _BUCKET.match(name) or ".." in name or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        raise ValueError(
            f"{name!r} is not a valid bucket name: 3-63 lower-case letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, not an IP address"
        )
    return name


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` → (bucket, key); `ValueError` with the expected form otherwise."""
    rest = uri.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if rest == uri or not bucket or not key:
        raise ValueError(f"{uri!r} is not an S3 object URI: expected s3://BUCKET/KEY")
    return bucket, key


def s3_client(
    endpoint: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    *,
    attempts: int = 3,
    connect_timeout: float = 3.0,
    read_timeout: float = 30.0,
) -> Any:
    """A boto3 S3 client with bounded retries (botocore's standard mode) and short timeouts.

    Path-style addressing, because MinIO and most self-hosted S3 servers (the original's
    deployments used MinIO) do not serve virtual-host buckets. Without keys, boto3's usual
    chain (environment, profile, instance role) applies.
    """
    import boto3  # noqa: PLC0415 - imported on use: boto3 takes ~0.3 s to import
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        retries={"max_attempts": attempts, "mode": "standard"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        s3={"addressing_style": "path"},
        # botocore >= 1.36 adds CRC32 trailers to every upload by default, which many
        # S3-compatible servers refuse; the archive sends its own SHA-256 instead.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region or "us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
    )


CREDENTIAL_ERRORS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken", "403"}
)


def error_code(error: BaseException) -> str | None:
    """The S3 error code of a botocore `ClientError` (`NoSuchKey`, `412`, ...), else None."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def describe_error(error: BaseException, endpoint: str | None) -> str:
    """One line a user can act on, for any botocore failure."""
    where = endpoint or "AWS S3"
    code = error_code(error)
    if code in CREDENTIAL_ERRORS:
        return f"{where} refused the credentials ({code}): check the S3 access key and secret key"
    if code is not None:
        message = getattr(error, "response", {}).get("Error", {}).get("Message") or ""
        return f"{where} answered {code}{': ' + message if message else ''}"
    name = type(error).__name__
    if name in (
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ConnectionClosedError",
        "ReadTimeoutError",
    ):
        return f"cannot reach the S3 endpoint {where} ({name})"
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return "no S3 credentials: set the access key and secret key"
    return f"S3 request to {where} failed: {error}"
