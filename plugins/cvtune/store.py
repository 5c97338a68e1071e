"""The artifact store: one small path API over local directories and object stores.

Local paths (``/data/x``, ``file:///data/x``) use the OS directly, with atomic writes (write to a
temporary sibling, then rename) so a ledger is never seen half-written. Anything else
(``s3://bucket/key``) goes through fsspec, so the same calls work once ``s3fs`` or the
SageMaker backend's S3 support is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
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


def _fs(uri: str):
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    return fs, path


def exists(uri: str) -> bool:
    if is_local(uri):
        return os.path.exists(local_path(uri))
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
    fs, path = _fs(uri)
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False))


def read_bytes(uri: str) -> bytes:
    if is_local(uri):
        with open(local_path(uri), "rb") as f:
            return f.read()
    fs, path = _fs(uri)
    with fs.open(path, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    if is_local(uri):
        path = local_path(uri)
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
        return
    fs, path = _fs(uri)
    with fs.open(path, "wb") as f:
        f.write(data)


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
    for name in listdir(uri):
        copy(join(uri, name), os.path.join(local_dir, name))


def upload_dir(local_dir: str, uri: str) -> None:
    for root, _dirs, files in os.walk(local_dir):
        for name in files:
            src = os.path.join(root, name)
            rel = os.path.relpath(src, local_dir).replace(os.sep, "/")
            copy(src, join(uri, rel))
