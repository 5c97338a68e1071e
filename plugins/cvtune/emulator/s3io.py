"""The emulator's own S3 access (the platform's, not the job's): channels in, artifacts out."""

from __future__ import annotations

import io
import os
import tarfile
from typing import Any


def split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def objects(s3: Any, uri: str) -> list[str]:
    """Keys under an ``S3Prefix`` URI, as SageMaker reads them: every object whose key starts with it."""
    bucket, prefix = split(uri)
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents") or [] if not o["Key"].endswith("/"))
    return sorted(keys)


def download_prefix(s3: Any, uri: str, dest: str) -> int:
    """Every object under ``uri`` into ``dest``, keeping the path below the prefix (File mode)."""
    bucket, prefix = split(uri)
    keys = objects(s3, uri)
    for key in keys:
        relative = key[len(prefix):].lstrip("/") if key != prefix else ""
        relative = relative or os.path.basename(key)
        target = os.path.join(dest, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # one GET per object on the caller's thread: download_file's transfer threads, from
        # 20 jobs at once, left jobs hanging in Downloading against moto's server
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        try:
            with open(target, "wb") as f:
                f.write(body.read())
        finally:
            body.close()
    return len(keys)


def read(s3: Any, uri: str) -> bytes:
    bucket, key = split(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def write(s3: Any, uri: str, data: bytes, **extra: Any) -> None:
    bucket, key = split(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=data, **extra)


def extract(data: bytes, dest: str) -> None:
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        tar.extractall(dest, filter="data")


def pack(directory: str) -> bytes:
    """A ``.tar.gz`` of the directory's contents (as SageMaker packs ``/opt/ml/model``)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, name), arcname=name)
    return raw.getvalue()
