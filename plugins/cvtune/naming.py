"""Deterministic names: what makes a retried Airflow task find its own earlier work."""

from __future__ import annotations

import hashlib
import re


def slug(text: str, limit: int) -> str:
    s = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    return s[:limit].strip("-") or "x"


def derive_id(*parts: object, prefix: str = "", limit: int = 50) -> str:
    """A valid SageMaker-style name, stable for the same parts (dag id, run id, task id, ...).

    The readable prefix is truncated; the hash of every part keeps distinct inputs distinct.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:10]
    head = slug(prefix, max(1, limit - len(digest) - 1)) if prefix else ""
    return f"{head}-{digest}" if head else digest
