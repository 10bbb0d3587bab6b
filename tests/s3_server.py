"""A real S3-compatible server on loopback (moto's standalone server) for the object-store tests.

`s3_server()` starts one and yields an S3Server: its endpoint, a bucket made for the test, a boto3 client,
and `env`, the environment a user would set (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL),
isolated from this machine's own AWS configuration (~/.aws is not read)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

from conftest import cli_env

REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_env(endpoint: str | None, key_id: str | None, secret: str | None) -> dict:
    """cli_env() without any AWS setting of this machine, plus the given ones (None: left unset)."""
    env = {k: v for k, v in cli_env().items() if not k.startswith(("AWS_", "BOTO_"))}
    env.update(AWS_CONFIG_FILE="/nonexistent", AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
               AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION=REGION)
    for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", key_id),
                        ("AWS_SECRET_ACCESS_KEY", secret)):
        if value is not None:
            env[name] = value
    return env


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    key_id: str
    secret: str
    client: object = None
    env: dict = field(default_factory=dict)

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()


def _client(endpoint: str, key_id: str, secret: str, service: str = "s3"):
    import boto3

    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key_id,
                        aws_secret_access_key=secret)


@contextmanager
def s3_server(no_auth_actions: int | None = None):
    """A `python -m moto.server` on 127.0.0.1 with a fresh bucket. `no_auth_actions`: moto enforces IAM
    (access keys and their users' policies) after that many requests (INITIAL_NO_AUTH_ACTION_COUNT)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if no_auth_actions is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(no_auth_actions)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"moto server did not start (exit {proc.poll()})")
                time.sleep(0.1)
        endpoint = f"http://127.0.0.1:{port}"
        key_id, secret = "AKIACOLLAGETEST", f"collage-secret-{uuid.uuid4().hex}"
        server = S3Server(endpoint, "bucket", key_id, secret, _client(endpoint, key_id, secret),
                          aws_env(endpoint, key_id, secret))
        server.client.create_bucket(Bucket=server.bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_only_user(server: S3Server) -> tuple[str, str]:
    """(key id, secret) of an IAM user allowed to list and read the bucket but not to write (3 requests)."""
    iam = _client(server.endpoint, server.key_id, server.secret, "iam")
    iam.create_user(UserName="reader")
    iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=(
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
        '"Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}]}'))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]
