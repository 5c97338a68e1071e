"""What goes to S3 before a training job: the training code and local channels, content-addressed.

The entry point's folder (the files :func:`cvtune.sourcedir.source_files` lists, which the
ledger's code fingerprint hashes too) is packed into ``sourcedir.tar.gz`` the way SageMaker
script mode expects it, as a *deterministic* archive (sorted names, mtime 0, uid/gid 0, fixed modes, gzip
without a timestamp), so the same code always has the same SHA-256 and lands at the same key
``{s3_prefix}/code/{sha}/sourcedir.tar.gz``. A local channel directory (a fold of a local
manifest) goes to ``{s3_prefix}/data/{sha}/...`` keyed by the hash of its files. Either is
uploaded only when ``HeadObject`` says it is not there yet, so a retried run, a second run and
every fold job of a run share one copy.

Without an S3 client :class:`Staging` only plans: it computes the same URIs and records what it
would upload (the dry run).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass, field
from typing import Any

from cvtune import store
from cvtune.sagemaker.errors import is_not_found
from cvtune.sourcedir import files_sha256, source_dir, source_files
from cvtune.store import file_sha256, split_s3_uri

CONTENT_TYPES = {".csv": "text/csv", ".parquet": "application/x-parquet"}


def pack_sourcedir(directory: str) -> tuple[bytes, str]:
    """A reproducible ``sourcedir.tar.gz`` of ``directory`` and the SHA-256 of its tar stream."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in source_files(directory):
            info = tarfile.TarInfo(name)
            info.size = os.path.getsize(path)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with open(path, "rb") as f:
                tar.addfile(info, f)
    data = raw.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0) as gz:
        gz.write(data)
    return packed.getvalue(), sha


def directory_sha256(directory: str) -> str:
    """Content hash of a directory: relative names and bytes of its files, in sorted order."""
    return files_sha256(source_files(directory))


def content_type(names: list[str]) -> str | None:
    """``ContentType`` of a channel from its files' extensions; None when absent or mixed."""
    types = {CONTENT_TYPES.get(os.path.splitext(n)[1].lower()) for n in names}
    types.discard(None)
    return types.pop() if len(types) == 1 else None


@dataclass
class Staging:
    """Puts code and local channels under ``s3_prefix``; with ``s3=None`` it only plans."""

    s3_prefix: str
    s3: Any = None
    uploads: list[dict[str, Any]] = field(default_factory=list)
    _code: dict[str, str] = field(default_factory=dict)
    _channels: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    _digests: dict[str, str] = field(default_factory=dict)

    def code(self, entry_point: str) -> str:
        """S3 URI of the ``sourcedir.tar.gz`` holding the entry point's folder (packed once)."""
        directory = source_dir(entry_point)
        if directory not in self._code:
            data, sha = pack_sourcedir(directory)
            uri = f"{self.s3_prefix}/code/{sha}/sourcedir.tar.gz"
            uploaded = self._put_bytes(uri, data)
            self.uploads.append({"local": directory, "uri": uri, "kind": "code", "bytes": len(data), "uploaded": uploaded})
            self._code[directory] = uri
        return self._code[directory]

    def channel(self, uri: str) -> tuple[str, str | None]:
        """(S3 URI, ContentType) of a channel given as a local directory/file or an S3 prefix."""
        if uri not in self._channels:
            self._channels[uri] = self._stage_local(uri) if store.is_local(uri) else (uri, self._s3_content_type(uri))
        return self._channels[uri]

    def digest(self, uri: str) -> str | None:
        """An id of the content of channel ``uri`` (after :meth:`channel`): the SHA-256 of a local
        channel's files, or of an S3 prefix's keys and ETags; ``None`` when not known (an S3
        channel while only planning). The same content always has the same id, so a job can keep
        a copy under it in the warm pool's cache (docs/training-script.md)."""
        return self._digests.get(uri)

    # -- internals -------------------------------------------------------------------------
    def _stage_local(self, uri: str) -> tuple[str, str | None]:
        path = store.local_path(uri)
        if os.path.isdir(path):
            files = source_files(path)
            sha = directory_sha256(path)
        elif os.path.isfile(path):
            files = [(os.path.basename(path), path)]
            sha = file_sha256(path)
        else:
            raise FileNotFoundError(f"channel data {uri} does not exist")
        prefix = f"{self.s3_prefix}/data/{sha}"
        self._digests[uri] = sha
        uploaded = [self._put_file(f"{prefix}/{name}", local) for name, local in files]
        self.uploads.append(
            {"local": path, "uri": prefix + "/", "kind": "channel", "files": len(files), "uploaded": any(uploaded)}
        )
        return prefix + "/", content_type([name for name, _ in files])

    def _s3_content_type(self, uri: str) -> str | None:
        if self.s3 is None:
            return content_type([uri.rstrip("/")])
        bucket, key = split_s3_uri(uri)
        objects = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            objects.extend(page.get("Contents", []))
        digest = hashlib.sha256()
        for o in sorted(objects, key=lambda o: o["Key"]):
            digest.update(f"{o['Key'][len(key):]}\0{o.get('ETag', '')}\0{o.get('Size', '')}\n".encode())
        self._digests[uri] = digest.hexdigest()
        return content_type([o["Key"] for o in objects] or [key])

    def _exists(self, uri: str) -> bool:
        from botocore.exceptions import ClientError

        bucket, key = split_s3_uri(uri)
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    def _put_bytes(self, uri: str, data: bytes) -> bool:
        if self.s3 is None or self._exists(uri):
            return False
        bucket, key = split_s3_uri(uri)
        self.s3.put_object(Bucket=bucket, Key=key, Body=data)
        return True

    def _put_file(self, uri: str, path: str) -> bool:
        if self.s3 is None or self._exists(uri):
            return False
        bucket, key = split_s3_uri(uri)
        self.s3.upload_file(path, bucket, key)
        return True
