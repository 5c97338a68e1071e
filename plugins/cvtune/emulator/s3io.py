"""The emulator's own S3 access (the platform's, not the job's): channels in, artifacts out."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
from typing import Any


def split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def listing(s3: Any, uri: str) -> list[dict[str, Any]]:
    """Objects under an ``S3Prefix`` URI, as SageMaker reads them: every object whose key starts with
    it (``Key``, ``Size``, ``ETag``), sorted by key."""
    bucket, prefix = split(uri)
    found: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.extend(o for o in page.get("Contents") or [] if not o["Key"].endswith("/"))
    return sorted(found, key=lambda o: o["Key"])


def objects(s3: Any, uri: str) -> list[str]:
    """Keys under an ``S3Prefix`` URI (see :func:`listing`)."""
    return [o["Key"] for o in listing(s3, uri)]


class ObjectCache:
    """The emulator's own copy of the S3 objects jobs have read, by bucket, key and ETag.

    Not the instance's state (a job still receives, and is billed for, its channels): it only
    spares the emulator a GET through moto's server per object per job, which at a scaled clock
    (10 ms real = 1 s emulated at 1/100) would lengthen every job's download phase.
    """

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="sm-emu-objects-")

    def path(self, s3: Any, bucket: str, obj: dict[str, Any]) -> str:
        name = hashlib.sha256(f"{bucket}\0{obj['Key']}\0{obj.get('ETag', '')}".encode()).hexdigest()
        path = os.path.join(self.dir, name)
        if not os.path.exists(path):
            # one GET on the caller's thread: download_file's transfer threads, from 20 jobs at
            # once, left jobs hanging in Downloading against moto's server
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
            partial = f"{path}.{threading.get_ident()}"
            try:
                with open(partial, "wb") as f:
                    f.write(body.read())
            finally:
                body.close()
            os.replace(partial, path)  # two jobs fetching the same object: either copy is whole
        return path

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def download_prefix(s3: Any, uri: str, dest: str, cache: ObjectCache | None = None) -> list[tuple[str, int]]:
    """Every object under ``uri`` into ``dest``, keeping the path below the prefix (File mode);
    ``(local path, bytes)`` of each. ``cache`` keeps the bytes between calls (see :class:`ObjectCache`)."""
    bucket, prefix = split(uri)
    own = cache is None
    cache = cache or ObjectCache()
    written = []
    try:
        for obj in listing(s3, uri):
            key = obj["Key"]
            relative = key[len(prefix):].lstrip("/") if key != prefix else ""
            relative = relative or os.path.basename(key)
            target = os.path.join(dest, relative)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(cache.path(s3, bucket, obj), target)  # a copy: a job may write to its input
            written.append((target, os.path.getsize(target)))
    finally:
        if own:
            cache.remove()
    return written


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
