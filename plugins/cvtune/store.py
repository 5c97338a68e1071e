"""The artifact store: one small path API over local directories and object stores.

Local paths (``/data/x``, ``file:///data/x``) use the OS directly, with atomic writes (write to a
temporary sibling, then rename) so a ledger is never seen half-written. ``s3://bucket/key`` uses
boto3 directly (s3fs is not installable next to the pinned botocore); an object PUT is atomic, so
a ledger is never seen half-written there either. The client comes from :func:`use_s3_client`
(the SageMaker backend registers its own, so the store uses the same AWS connection) or else
boto3's default credential chain. Any other scheme goes through fsspec.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    """The filesystem path of a local URI (``file:///a/b`` → ``/a/b``)."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if "://" in uri:
        raise ValueError(f"{uri} is not a local path")
    return uri


def join(base: str, *parts: str) -> str:
    if is_local(base):
        return os.path.join(base, *parts)
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


_s3_factory: Callable[[], Any] | None = None
_s3_default: Any = None


def use_s3_client(factory: Callable[[], Any] | None) -> None:
    """Make ``s3://`` calls use ``factory()``'s client (``None``: boto3's default chain again)."""
    global _s3_factory, _s3_default
    _s3_factory = factory
    _s3_default = None


def forget_s3_client(factory: Callable[[], Any]) -> None:
    """Undo :func:`use_s3_client` if ``factory`` is still the one in use."""
    if _s3_factory is factory:
        use_s3_client(None)


def _is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``."""
    if not _is_s3(uri):
        raise ValueError(f"{uri} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _s3(uri: str) -> tuple[Any, str, str]:
    """(client, bucket, key) of an ``s3://`` URI."""
    global _s3_default
    bucket, key = split_s3_uri(uri)
    if _s3_factory is not None:
        return _s3_factory(), bucket, key
    if _s3_default is None:
        import boto3

        _s3_default = boto3.client("s3")
    return _s3_default, bucket, key


def _s3_missing(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in ("404", "NoSuchKey", "NotFound")


def _s3_keys(uri: str, delimiter: bool) -> tuple[list[str], list[str]]:
    """(object keys, common prefixes) under the prefix ``uri`` (as a directory)."""
    client, bucket, key = _s3(uri)
    prefix = key.rstrip("/") + "/" if key else ""
    keys: list[str] = []
    prefixes: list[str] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = "/"
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
        keys += [o["Key"] for o in page.get("Contents", [])]
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
    return keys, prefixes


def _fs(uri: str):
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def exists(uri: str) -> bool:
    if is_local(uri):
        return os.path.exists(local_path(uri))
    if _is_s3(uri):
        client, bucket, key = _s3(uri)
        if key and not key.endswith("/"):
            try:
                client.head_object(Bucket=bucket, Key=key)
                return True
            except Exception as exc:
                if not _s3_missing(exc):
                    raise
        keys, prefixes = _s3_keys(uri, delimiter=True)  # a "directory": anything under it
        return bool(keys or prefixes)
    fs, path = _fs(uri)
    return fs.exists(path)


def makedirs(uri: str) -> None:
    if is_local(uri):
        os.makedirs(local_path(uri), exist_ok=True)
    # object stores have no directories


def listdir(uri: str) -> list[str]:
    """Names (not paths) of the entries directly under ``uri``, sorted."""
    if is_local(uri):
        return sorted(os.listdir(local_path(uri)))
    if _is_s3(uri):
        keys, prefixes = _s3_keys(uri, delimiter=True)
        names = {k.rstrip("/").rsplit("/", 1)[-1] for k in keys + prefixes}
        names.discard("")
        if not names:
            raise FileNotFoundError(uri)
        return sorted(names)
    fs, path = _fs(uri)
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


def read_bytes(uri: str) -> bytes:
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            return f.read()
    if _is_s3(uri):
        client, bucket, key = _s3(uri)
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            if _s3_missing(exc):
                raise FileNotFoundError(uri) from exc
            raise
    fs, path = _fs(uri)
    with fs.open(path, "rb") as f:
        return f.read()


# -- conditional writes (compare-and-swap) -----------------------------------------------------
# The two primitives a single-writer protocol needs (the run ledger's lease, the registry's version
# claim): read an object with a version token, and write it only if it is still at that token
# (``if_match``) or does not exist yet (``if_none_match``). S3 tokens are ETags; local tokens are
# a digest of the content, compared and replaced under an flock() held on a sidecar lock file, so
# the check and the rename are one atomic step for every process on the host.


class PreconditionFailed(Exception):
    """A conditional write found the object changed (``if_match``) or present (``if_none_match``)."""

    def __init__(self, uri: str, condition: str) -> None:
        self.uri = uri
        self.condition = condition
        super().__init__(f"{uri}: {condition}")


def _token(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _s3_code(exc: Exception) -> str | None:
    return getattr(exc, "response", {}).get("Error", {}).get("Code")


def read_versioned(uri: str) -> tuple[bytes, str]:
    """The object's bytes and its version token (``FileNotFoundError`` when absent)."""
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            data = f.read()
        return data, _token(data)
    if _is_s3(uri):
        client, bucket, key = _s3(uri)
        try:
            response = client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _s3_missing(exc):
                raise FileNotFoundError(uri) from exc
            raise
        return response["Body"].read(), response["ETag"]
    data = read_bytes(uri)
    return data, _token(data)


def _local_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _local_conditional_write(uri: str, path: str, data: bytes, if_match: str | None, if_none_match: bool) -> None:
    import fcntl

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    lock = os.open(os.path.join(directory, f".{os.path.basename(path)}.lock"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel if this process dies
        try:
            with open(path, "rb") as f:
                current: str | None = _token(f.read())
        except FileNotFoundError:
            current = None
        if if_none_match and current is not None:
            raise PreconditionFailed(uri, "If-None-Match: * (it exists)")
        if if_match is not None and current != if_match:
            raise PreconditionFailed(uri, f"If-Match: {if_match} (it is at {current})")
        _local_write(path, data)
    finally:
        os.close(lock)


def write_bytes(uri: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
    """Write ``data`` atomically; returns the new version token.

    ``if_match``: only if the object is still at that token; ``if_none_match``: only if it does not
    exist. Either failing raises :class:`PreconditionFailed` and writes nothing.
    """
    conditional = if_match is not None or if_none_match
    if is_local(uri):
        path = local_path(uri)
        if conditional:
            _local_conditional_write(uri, path, data, if_match, if_none_match)
        else:
            _local_write(path, data)
        return _token(data)
    if _is_s3(uri):
        client, bucket, key = _s3(uri)
        kwargs: dict[str, Any] = {}
        # "If-None-Match: Uploads the object only if the object key name does not already exist in
        # the bucket specified. Otherwise, Amazon S3 returns a 412 Precondition Failed error. If a
        # conflicting operation occurs during the upload S3 returns a 409 ConditionalRequestConflict
        # response." / "If-Match: Uploads the object only if the ETag (entity tag) value provided
        # during the WRITE operation matches the ETag of the object in S3." (S3 API Reference, PutObject)
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            response = client.put_object(Bucket=bucket, Key=key, Body=data, **kwargs)
        except Exception as exc:
            code = _s3_code(exc)
            if conditional and code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                raise PreconditionFailed(uri, f"{'If-Match' if if_match else 'If-None-Match'} ({code})") from exc
            if if_match is not None and _s3_missing(exc):  # If-Match on a deleted object
                raise PreconditionFailed(uri, "If-Match (the object is gone)") from exc
            raise
        return response["ETag"]
    fs, path = _fs(uri)
    if conditional:  # other fsspec stores: checked, but not atomically (no compare-and-swap there)
        current = _token(read_bytes(uri)) if fs.exists(path) else None
        if (if_none_match and current is not None) or (if_match is not None and current != if_match):
            raise PreconditionFailed(uri, "If-None-Match: *" if if_none_match else f"If-Match: {if_match}")
    with fs.open(path, "wb") as f:
        f.write(data)
    return _token(data)


def version_token(uri: str) -> str:
    """The current version token of an object (as :func:`read_versioned` gives it), cheaply on S3 (HEAD)."""
    if _is_s3(uri):
        client, bucket, key = _s3(uri)
        try:
            return client.head_object(Bucket=bucket, Key=key)["ETag"]
        except Exception as exc:
            if _s3_missing(exc):
                raise FileNotFoundError(uri) from exc
            raise
    return read_versioned(uri)[1]


# -- end of conditional writes --------------------------------------------------------------------


def append_bytes(uri: str, data: bytes) -> bool:
    """Append to a local file (created if absent) in one ``write``; ``False`` where the store
    cannot append (object stores: write one object per record instead)."""
    if not is_local(uri):
        return False
    path = local_path(uri)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)  # O_APPEND: one write lands whole at the end, even with readers about
    finally:
        os.close(fd)
    return True


def remove(uri: str) -> None:
    """Delete a file or a directory tree (local) or the objects under a prefix; missing is fine."""
    if is_local(uri):
        path = local_path(uri)
        if os.path.isdir(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)
        return
    if _is_s3(uri):
        client, bucket, key = _s3(uri)
        keys, _ = _s3_keys(uri.rstrip("/") + "/", delimiter=False)
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
        if key:
            client.delete_object(Bucket=bucket, Key=key)
        return
    fs, path = _fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_json(uri: str, obj: Any) -> None:
    write_text(uri, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256(uri: str) -> str:
    h = hashlib.sha256()
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        h.update(read_bytes(uri))
    return h.hexdigest()


def copy(src: str, dst: str) -> None:
    """Copy one file between any two locations."""
    if is_local(src) and is_local(dst):
        os.makedirs(os.path.dirname(os.path.abspath(local_path(dst))), exist_ok=True)
        shutil.copyfile(local_path(src), local_path(dst))
    else:
        write_bytes(dst, read_bytes(src))


def download_dir(uri: str, local_dir: str) -> None:
    """Make the files under ``uri`` (a directory or prefix) available under ``local_dir``."""
    os.makedirs(local_dir, exist_ok=True)
    if _is_s3(uri):  # the whole tree, as for a local directory
        keys, _ = _s3_keys(uri, delimiter=False)
        key = _s3(uri)[2]
        base = key.rstrip("/") + "/" if key else ""
        for key in keys:
            if not key.endswith("/"):
                copy(join(uri, key[len(base):]), os.path.join(local_dir, *key[len(base):].split("/")))
        return
    for name in listdir(uri):
        copy(join(uri, name), os.path.join(local_dir, name))


def upload_dir(local_dir: str, uri: str) -> None:
    for root, _dirs, files in os.walk(local_dir):
        for name in files:
            src = os.path.join(root, name)
            rel = os.path.relpath(src, local_dir).replace(os.sep, "/")
            copy(src, join(uri, rel))
