"""The artifact store: one small path API over local directories and object stores.

An :class:`ArtifactStore` carries its own credentials: the platform builds one from the cvtune
connection (``aws_conn_id``), so two stores in one process never share an S3 client, and no read
falls back to whatever identity happens to be in the process's environment.

Local paths (``/data/x``, ``file:///data/x``) use the OS directly, with atomic writes (write to a
temporary sibling, then rename) so a ledger is never seen half-written; files and directories get
the usual permissions of the process umask, so a web server may read the reports. ``s3://`` goes
through s3fs with the store's credentials; an object PUT is atomic, so a ledger is never seen
half-written there either. Any other scheme goes through fsspec.

The module-level functions (:func:`is_local`, :func:`local_path`, :func:`join`,
:func:`split_s3_uri`) only compute paths; every read and write is a method of a store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
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


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``."""
    if not is_s3(uri):
        raise ValueError(f"{uri} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def file_sha256(path: str) -> str:
    """sha256 of a local file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _local_write(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
    # os.open with 0o666 (not mkstemp's 0o600): the process umask decides who may read it
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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
    lock = os.open(os.path.join(directory, f".{os.path.basename(path)}.lock"), os.O_CREAT | os.O_RDWR, 0o666)
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


def _client_error_code(exc: BaseException) -> str | None:
    """The S3 error code of ``exc`` or of the botocore error s3fs translated into it."""
    for err in (exc, exc.__cause__, exc.__context__):
        code = getattr(err, "response", {}).get("Error", {}).get("Code") if err is not None else None
        if code:
            return str(code)
    return None


#: fsspec options of an S3 filesystem: ``key``, ``secret``, ``token``, ``endpoint_url``, ``region_name``.
S3Options = Mapping[str, Any]


class ArtifactStore:
    """Reads and writes artifacts with one set of credentials.

    :param s3: the S3 credentials and endpoint (:data:`S3Options`), or a function returning them
        (called once, on the first ``s3://`` access, so a store that never touches S3 never looks
        up a connection). ``None``: s3fs's own default chain (environment, ``~/.aws``, instance role).
    :param label: where the credentials come from, for error messages and ``repr``.
    """

    def __init__(self, s3: S3Options | Callable[[], S3Options] | None = None, *, label: str = "default credentials") -> None:
        self._s3_source = s3
        self._s3_options: dict[str, Any] | None = None if callable(s3) else dict(s3 or {})
        self._s3fs: Any = None
        self.label = label

    def __repr__(self) -> str:
        return f"ArtifactStore({self.label})"

    # -- path helpers, so a store can stand where the module was used -----------------------------
    is_local = staticmethod(is_local)
    local_path = staticmethod(local_path)
    join = staticmethod(join)

    # -- credentials ------------------------------------------------------------------------
    @property
    def s3_options(self) -> dict[str, Any]:
        """The resolved S3 options (looked up on first use); what :meth:`from_options` takes back."""
        if self._s3_options is None:
            source = self._s3_source
            assert callable(source)
            self._s3_options = {k: v for k, v in dict(source()).items() if v is not None}
        return self._s3_options

    def options(self) -> dict[str, Any]:
        """JSON-serialisable options that rebuild this store in another process (they hold secrets:
        pass them over a pipe, never into a file, a log or an environment)."""
        return {"s3": self.s3_options, "label": self.label}

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> ArtifactStore:
        options = options or {}
        return cls(options.get("s3") or {}, label=options.get("label", "default credentials"))

    def _s3(self) -> Any:
        if self._s3fs is None:
            import s3fs

            opts = dict(self.s3_options)
            client_kwargs = {k: opts.pop(k) for k in ("endpoint_url", "region_name") if opts.get(k)}
            self._s3fs = s3fs.S3FileSystem(
                key=opts.get("key"), secret=opts.get("secret"), token=opts.get("token"),
                client_kwargs=client_kwargs,
                # our own instance and no listing cache: another process may write at any time
                skip_instance_cache=True, use_listings_cache=False,
            )
        return self._s3fs

    def _fs(self, uri: str) -> tuple[Any, str]:
        if is_s3(uri):
            return self._s3(), uri[len("s3://") :]
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        return fs, path

    # -- reading ----------------------------------------------------------------------------
    def exists(self, uri: str) -> bool:
        """Whether a file or a non-empty "directory" (prefix) is at ``uri``."""
        if is_local(uri):
            return os.path.exists(local_path(uri))
        fs, path = self._fs(uri)
        return bool(fs.exists(path.rstrip("/")))

    def isdir(self, uri: str) -> bool:
        if is_local(uri):
            return os.path.isdir(local_path(uri))
        fs, path = self._fs(uri)
        return bool(fs.isdir(path.rstrip("/")))

    def listdir(self, uri: str) -> list[str]:
        """Names (not paths) of the entries directly under ``uri``, sorted."""
        if is_local(uri):
            return sorted(os.listdir(local_path(uri)))
        fs, path = self._fs(uri)
        path = path.rstrip("/")
        entries = fs.ls(path, detail=False)
        names = {p.rstrip("/").rsplit("/", 1)[-1] for p in entries if p.rstrip("/") != path}
        names.discard("")
        if not names:
            raise FileNotFoundError(uri)
        return sorted(names)

    def read_bytes(self, uri: str) -> bytes:
        if is_local(uri):
            with open(local_path(uri), "rb") as f:
                return f.read()
        fs, path = self._fs(uri)
        return bytes(fs.cat_file(path))

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri))

    def read_versioned(self, uri: str) -> tuple[bytes, str]:
        """The object's bytes and its version token (``FileNotFoundError`` when absent)."""
        if is_local(uri):
            data = self.read_bytes(uri)
            return data, _token(data)
        if is_s3(uri):
            from fsspec.asyn import sync

            fs = self._s3()
            bucket, key = split_s3_uri(uri)

            async def get() -> tuple[bytes, str]:
                response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
                async with response["Body"] as body:
                    return await body.read(), response["ETag"]

            return sync(fs.loop, get)
        data = self.read_bytes(uri)
        return data, _token(data)

    def sha256(self, uri: str) -> str:
        if is_local(uri):
            return file_sha256(local_path(uri))
        return hashlib.sha256(self.read_bytes(uri)).hexdigest()

    # -- writing ----------------------------------------------------------------------------
    def makedirs(self, uri: str) -> None:
        if is_local(uri):
            os.makedirs(local_path(uri), exist_ok=True)
        # object stores have no directories

    def write_bytes(self, uri: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> str:
        """Write ``data`` atomically; returns the new version token.

        ``if_match``: only if the object is still at that token; ``if_none_match``: only if it does
        not exist. Either failing raises :class:`PreconditionFailed` and writes nothing.
        """
        conditional = if_match is not None or if_none_match
        if is_local(uri):
            path = local_path(uri)
            if conditional:
                _local_conditional_write(uri, path, data, if_match, if_none_match)
            else:
                _local_write(path, data)
            return _token(data)
        if is_s3(uri):
            bucket, key = split_s3_uri(uri)
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
                response = self._s3().call_s3("put_object", Bucket=bucket, Key=key, Body=data, **kwargs)
            except Exception as exc:
                code = _client_error_code(exc)
                if conditional and code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                    raise PreconditionFailed(uri, f"{'If-Match' if if_match else 'If-None-Match'} ({code})") from exc
                if if_match is not None and (isinstance(exc, FileNotFoundError) or code in ("404", "NoSuchKey")):
                    raise PreconditionFailed(uri, "If-Match (the object is gone)") from exc
                raise
            return str(response["ETag"])
        fs, path = self._fs(uri)
        if conditional:  # other fsspec stores: checked, but not atomically (no compare-and-swap there)
            current = _token(self.read_bytes(uri)) if fs.exists(path) else None
            if (if_none_match and current is not None) or (if_match is not None and current != if_match):
                raise PreconditionFailed(uri, "If-None-Match: *" if if_none_match else f"If-Match: {if_match}")
        fs.pipe_file(path, data)
        return _token(data)

    def version_token(self, uri: str) -> str:
        """The current version token of an object (as :meth:`read_versioned` gives it), cheaply on S3 (HEAD)."""
        if is_s3(uri):
            bucket, key = split_s3_uri(uri)
            try:
                return str(self._s3().call_s3("head_object", Bucket=bucket, Key=key)["ETag"])
            except Exception as exc:
                if isinstance(exc, FileNotFoundError) or _client_error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                    raise FileNotFoundError(uri) from exc
                raise
        return self.read_versioned(uri)[1]

    def append_bytes(self, uri: str, data: bytes) -> bool:
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

    def remove(self, uri: str) -> None:
        """Delete a file or a directory tree (local) or the objects under a prefix; missing is fine."""
        if is_local(uri):
            path = local_path(uri)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.unlink(path)
            return
        fs, path = self._fs(uri)
        if fs.exists(path.rstrip("/")):
            fs.rm(path.rstrip("/"), recursive=True)

    def write_text(self, uri: str, text: str) -> str:
        return self.write_bytes(uri, text.encode("utf-8"))

    def write_json(self, uri: str, obj: Any) -> str:
        return self.write_text(uri, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

    # -- trees ------------------------------------------------------------------------------
    def copy(self, src: str, dst: str) -> None:
        """Copy one file between any two locations."""
        if is_local(src) and is_local(dst):
            os.makedirs(os.path.dirname(os.path.abspath(local_path(dst))), exist_ok=True)
            shutil.copyfile(local_path(src), local_path(dst))
        else:
            self.write_bytes(dst, self.read_bytes(src))

    def download_dir(self, uri: str, local_dir: str) -> None:
        """Make the files under ``uri`` (a directory or prefix, the whole tree) available under ``local_dir``."""
        os.makedirs(local_dir, exist_ok=True)
        if is_local(uri):
            for name in self.listdir(uri):
                self.copy(join(uri, name), os.path.join(local_dir, name))
            return
        fs, path = self._fs(uri)
        base = path.rstrip("/") + "/"
        for found in fs.find(base):
            if found.endswith("/") or not found.startswith(base):
                continue
            rel = found[len(base) :]
            self.copy(join(uri, rel), os.path.join(local_dir, *rel.split("/")))

    def upload_dir(self, local_dir: str, uri: str) -> None:
        for root, _dirs, files in os.walk(local_dir):
            for name in files:
                src = os.path.join(root, name)
                rel = os.path.relpath(src, local_dir).replace(os.sep, "/")
                self.copy(src, join(uri, rel))


def default_store() -> ArtifactStore:
    """A store with s3fs's default credential chain, for callers outside any connection (scripts,
    tests); tasks get theirs from the platform."""
    return ArtifactStore()
