"""The training code a job gets: the entry point's folder, as SageMaker script mode ships it.

SageMaker runs the entry point out of ``sourcedir.tar.gz``, the whole folder the entry point sits
in, so a helper module next to the script is as much "the code" as the script. One file walk
decides what belongs to that folder, for the tarball (:mod:`cvtune.sagemaker.staging`) and for the
ledger's code fingerprint (:func:`code_sha256`), so a run refuses to resume on code that differs
from what its jobs were given. Caches, version control and dotfiles are left out of both; the
fingerprint also leaves out a local artifact root, job folder or fold data that sits inside the
folder (the run writes the first two while it runs; the manifest's fingerprints check the data).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from cvtune import store
from cvtune.store import file_sha256

SKIP_DIRS = ("__pycache__", ".git", ".ipynb_checkpoints")


def source_dir(entry_point: str) -> str:
    """The folder shipped with ``entry_point``: the one it sits in."""
    return os.path.dirname(os.path.abspath(entry_point))


def source_files(directory: str, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(relative name, path) of every file under ``directory``, sorted; caches and dotfiles left
    out, and any of the ``exclude`` directories (or files) that lie inside it."""
    pruned = {os.path.realpath(p) for p in exclude}
    out = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(
            d for d in dirs
            if d not in SKIP_DIRS and not d.startswith(".") and os.path.realpath(os.path.join(root, d)) not in pruned
        )
        for name in files:
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(root, name)
            if pruned and os.path.realpath(path) in pruned:
                continue
            out.append((os.path.relpath(path, directory).replace(os.sep, "/"), path))
    return sorted(out)


def files_sha256(files: list[tuple[str, str]]) -> str:
    """Content hash of (relative name, path) pairs: the names and the bytes, in the given order."""
    h = hashlib.sha256()
    for name, path in files:
        h.update(name.encode() + b"\0")
        h.update(file_sha256(path).encode() + b"\0")
    return h.hexdigest()


def code_sha256(entry_point: str, exclude: Iterable[str] = ()) -> str | None:
    """Fingerprint of the code shipped with ``entry_point`` (its folder, as the tarball holds it,
    less ``exclude``); ``None`` when the entry point is not a local file."""
    if not isinstance(entry_point, str) or not store.is_local(entry_point):
        return None
    path = store.local_path(entry_point)
    if not os.path.isfile(path):
        return None
    return files_sha256(source_files(source_dir(path), exclude))
