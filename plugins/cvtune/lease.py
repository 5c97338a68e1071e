"""Who drives a run: the lease recorded next to its ledger (``lease.json``, see cvtune.ledger).

A run has one driver at a time. The driver names itself in the lease (host, pid, a random id)
with a heartbeat and an expiry, and every write of the lease and of the ledger's snapshot is
conditional on the version it read (:func:`cvtune.store.write_bytes` with ``if_match``), so two
drivers can never both write: the second one's write fails and it stops
(:class:`~cvtune.errors.LedgerConflictError`).

A lease is taken over only from a holder that cannot write any more: one on this host whose
process is gone (or whose pid now belongs to another process), or one whose lease expired (a host
we cannot look into). A driver renews its lease (rewriting only ``lease.json``) before any write
once it is past half the lease's time, and a driver idle that long renews it from its wait loop
(:meth:`cvtune.ledger.RunLedger.lease_due`).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any

#: Seconds a lease stays valid after its last heartbeat.
LEASE_TTL_S = 120.0


#: Lease ids of drivers in this process that stopped (an exception left their run): with no
#: process gone, this is how a later driver in the same process knows the holder writes no more.
_abandoned: set[str] = set()


def abandon(owner: dict[str, Any] | None) -> None:
    """Record that this process's driver ``owner`` stopped driving (it raised) without releasing."""
    if owner is not None:
        _abandoned.add(owner["id"])


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), which tells a reused pid from the original."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def new_owner(label: str | None = None) -> dict[str, Any]:
    """This process as a lease owner; ``label`` says what it is (an Airflow task, the CLI)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_start": _process_start(pid),
            "id": uuid.uuid4().hex[:12], "label": label}


def describe(lease: dict[str, Any], now: float | None = None) -> str:
    """The holder in words, for errors and logs."""
    now = time.time() if now is None else now
    what = f" ({lease['label']})" if lease.get("label") else ""
    return (
        f"pid {lease.get('pid')} on host {lease.get('host')}{what}, lease {lease.get('id')}, "
        f"last heartbeat {now - float(lease.get('heartbeat', now)):.0f} s ago, "
        f"expires in {float(lease.get('expires', now)) - now:.0f} s"
    )


def vacancy(lease: dict[str, Any] | None, me: dict[str, Any], now: float | None = None) -> str | None:
    """Why ``me`` may take ``lease`` (a reason to log, ``""`` when it is free or already ``me``'s),
    or ``None`` when its holder may still write."""
    if not lease:
        return ""
    if lease.get("id") == me["id"]:
        return ""
    now = time.time() if now is None else now
    if float(lease.get("expires", 0)) <= now:
        return f"its lease expired {now - float(lease.get('expires', 0)):.0f} s ago"
    if lease.get("host") == me["host"]:
        pid = int(lease.get("pid", -1))
        if pid == os.getpid() and lease.get("id") in _abandoned:
            return "its driver in this process stopped"
        if not _alive(pid):
            return f"its process {pid} on this host is gone"
        started = _process_start(pid)
        if lease.get("pid_start") and started and started != lease["pid_start"]:
            return f"its process {pid} on this host is gone (the pid now belongs to another process)"
    return None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    if os.path.exists(f"/proc/{pid}/stat"):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":  # a zombie writes nothing
                    return False
        except (OSError, IndexError):
            pass
    return True
