"""A real S3-compatible server for tests: moto's server mode in its own process, over HTTP.

moto accepts any credentials until authentication is switched on; `with_auth=True` creates
an IAM user with S3 rights first, then switches it on, so wrong keys are refused like S3 does.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.processes import free_port, http_get, wait_until
from xaynet.core.s3 import s3_client


@dataclass
class S3Server:
    port: int
    access_key: str = "minio"
    secret_key: str = "minio123"
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, with_auth: bool = False) -> None:
        """Start (again) on the same port; moto keeps nothing across restarts."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: http_get(self.url + "/moto-api/data.json", 1)[0] == 200, 30, "moto server")
        if with_auth:
            self._enable_auth()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def _enable_auth(self) -> None:
        import boto3

        iam = boto3.client(
            "iam",
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        iam.create_user(UserName="xaynet")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="xaynet", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="xaynet")["AccessKey"]
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        request = urllib.request.Request(
            self.url + "/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def client(self) -> Any:
        return s3_client(self.url, "minio", self.access_key, self.secret_key)

    def objects(self, bucket: str = "global-models") -> dict[str, bytes]:
        """Every object of the bucket and its bytes ({} when the bucket does not exist)."""
        client = self.client()
        try:
            listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        except client.exceptions.NoSuchBucket:
            return {}
        return {
            entry["Key"]: client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            for entry in listing
        }

    def toml(self, access_key: str | None = None, bucket: str | None = None) -> str:
        """The original's `[s3]` section pointing at this server."""
        lines = [
            "[s3]",
            f'access_key = "{access_key or self.access_key}"',
            f'secret_access_key = "{self.secret_key}"',
            f'region = ["minio", "{self.url}"]',
        ]
        if bucket:
            lines += ["[s3.buckets]", f'global_models = "{bucket}"']
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def s3_server(with_auth: bool = False, start: bool = True) -> Iterator[S3Server]:
    server = S3Server(free_port())
    if start:
        server.start(with_auth)
    try:
        yield server
    finally:
        server.stop()
