"""A real S3 object store for the tests: moto's S3 server on a free loopback port.

The server runs in its own process (moto's in-process threaded server deadlocks with
TensorFlow's S3 client) and in its own session, so it is stopped whatever happens to the
tests. The environment points every client at it, and every child process inherits it:
tensorflow-io (`S3_ENDPOINT`, `S3_VERIFY_SSL`), boto3 and Beam's S3 file system
(`AWS_ENDPOINT_URL`), with throw-away credentials and no probe of the EC2 metadata service.
Tests talk to the bucket with boto3 only, so the pytest process itself never loads
tensorflow-io (whose exit would abort it; see ctdenoise/storage/files.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port, stop, wait_for_port

BUCKET = "ctdenoise-test"


def s3_environment(endpoint: str) -> dict[str, str]:
    """What TensorFlow (through tensorflow-io), boto3 and Beam need to use `endpoint`."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "S3_ENDPOINT": endpoint,
        "S3_VERIFY_SSL": "0",  # tensorflow-io (the AWS C++ SDK)
        "AWS_ENDPOINT_URL": endpoint,  # boto3, and with it Beam's S3 file system
    }


@dataclass
class ObjectStore:
    """The running server and its bucket, with the few operations the tests need."""

    endpoint: str
    bucket: str

    @property
    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint)

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix.strip('/')}"

    def upload_tree(self, folder: Path, prefix: str) -> str:
        """Every file under `folder` to `prefix/<relative path>`; the prefix's s3:// URL."""
        client = self.client
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            client.upload_file(str(path), self.bucket, f"{prefix.strip('/')}/{path.relative_to(folder).as_posix()}")
        return self.url(prefix)

    def keys(self, url: str) -> list[str]:
        """Keys under the folder `url` (s3:// or minio:// of this bucket), relative to it."""
        prefix = self.key(url).rstrip("/") + "/"
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(item["Key"][len(prefix) :] for page in pages for item in page.get("Contents", []))

    def read(self, url: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key(url))["Body"].read()

    def key(self, url: str) -> str:
        scheme, _, rest = url.partition("://")
        bucket, _, key = rest.partition("/")
        if scheme not in ("s3", "minio") or bucket != self.bucket:
            raise ValueError(f"{url} is not in s3://{self.bucket}")
        return key


def start_object_store() -> Iterator[ObjectStore]:
    """A generator for a pytest fixture: the server up with an empty bucket and the
    environment set, then (on teardown, also after failures) the server stopped and the
    environment restored."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()  # noqa: SIM115  (the server's lifetime) The server logs every request: a pipe nobody reads would fill and stall it
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    saved = {key: os.environ.get(key) for key in s3_environment(endpoint)}
    try:
        wait_for_port(server, port, log, "moto server")
        os.environ.update(s3_environment(endpoint))
        store = ObjectStore(endpoint, BUCKET)
        store.client.create_bucket(Bucket=BUCKET)
        yield store
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop(server)
        log.close()
