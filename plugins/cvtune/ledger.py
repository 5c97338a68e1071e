"""The run ledger: the durable record of one tuning run.

One JSON document in the artifact store holds the config, every trial (its hyperparameters,
fold job names, fold scores and states) and the best trial. The tuner saves it after every
change, *before* it acts on the backend (a fold job is recorded as ``Launching`` before it is
created), which is what lets a retried task resume without launching any job twice.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from typing import Any

from cvtune import lease as lease_
from cvtune.errors import ConfigError, LeaseHeldError, LedgerConflictError
from cvtune.store import ArtifactStore, PreconditionFailed, default_store

log = logging.getLogger("cvtune.ledger")

LEDGER_VERSION = 1

# trial states
RUNNING = "Running"
COMPLETED = "Completed"
FAILED = "Failed"
STOPPED = "Stopped"
PRUNED = "Pruned"
TRIAL_DONE = frozenset({COMPLETED, FAILED, STOPPED, PRUNED})

# fold job states (besides the backend's InProgress / Completed / Failed / Stopped)
PENDING = "Pending"
LAUNCHING = "Launching"
CANCELLED = "Cancelled"
FOLD_DONE = frozenset({"Completed", "Failed", "Stopped", CANCELLED})


def fold_job_name(run_id: str, trial: int, fold: int) -> str:
    return f"{run_id}-t{trial:04d}-f{fold}"


def score_stats(scores: list[float]) -> tuple[float, float]:
    """Mean and population std (ddof=0, as scikit-learn's ``cv_results_`` reports)."""
    return statistics.fmean(scores), statistics.pstdev(scores) if len(scores) > 1 else 0.0


def running_means(fold_scores: list[float | None]) -> list[float]:
    """Running mean after 1, 2, … folds, over the leading folds that have a score."""
    out: list[float] = []
    total = 0.0
    for value in fold_scores:
        if value is None:
            break
        total += value
        out.append(total / (len(out) + 1))
    return out


def rank_key(trial: dict[str, Any], maximize: bool) -> tuple[float, float, int]:
    """Sort key of a completed trial: better mean first, then lower std, then earlier trial."""
    mean = trial["mean"]
    return (-mean if maximize else mean, trial["std"], trial["number"])


def new_ledger_data(
    *,
    run_id: str,
    config: dict[str, Any],
    config_fingerprint: str,
    manifest: dict[str, Any],
    kind: str = "tune",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The document of a run that has not started yet."""
    now = time.time()
    return {
        "version": LEDGER_VERSION,
        "run_id": run_id,
        "kind": kind,
        "status": "InProgress",
        "failure_reason": None,
        "created": now,
        "updated": now,
        "elapsed_s": 0.0,
        "config": config,
        "config_fingerprint": config_fingerprint,
        "manifest_uri": manifest.get("manifest_uri"),
        "manifest_fingerprint": manifest.get("fingerprint"),
        "folds": len(manifest["folds"]),
        "trials": [],
        "lease": None,
        **(extra or {}),
    }


_DAMAGED_FIX = "restore the file from a backup, or start the run again under a new run id"
_NUMBER = (int, float)
# (key, accepted types, may be null): what every reader of a ledger relies on
_TOP = (("run_id", str, False), ("kind", str, False), ("status", str, False), ("config", dict, False),
        ("config_fingerprint", str, False), ("manifest_uri", str, True), ("manifest_fingerprint", str, True),
        ("folds", int, False), ("trials", list, False))
_TRIAL = (("number", int, False), ("params", dict, False), ("hyperparameters", dict, False), ("state", str, False),
          ("mean", _NUMBER, True), ("std", _NUMBER, True), ("fold_scores", list, False), ("fold_jobs", list, False))
_FOLD_JOB = (("fold", int, False), ("job_name", str, False), ("state", str, False))


def parse_ledger(uri: str, raw: bytes) -> dict[str, Any]:
    """The ledger document in ``raw``, checked: a :class:`ConfigError` naming ``uri`` and what is wrong
    (not JSON, another version, a missing key, a wrong type) before anyone acts on it."""

    def damaged(problem: str) -> ConfigError:
        return ConfigError(f"ledger {uri}", problem, _DAMAGED_FIX)

    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise damaged(f"not valid JSON, truncated or corrupted ({exc})") from None
    if not isinstance(data, dict):
        raise damaged(f"expected a JSON object, got {type(data).__name__}")
    if data.get("version") != LEDGER_VERSION:
        raise damaged(f"ledger version {data.get('version')!r}, this cvtune reads version {LEDGER_VERSION}")

    def check(obj: dict[str, Any], fields: tuple, where: str) -> None:
        for key, types, nullable in fields:
            if key not in obj:
                raise damaged(f"{where}{key} is missing")
            value = obj[key]
            if value is None and nullable:
                continue
            if not isinstance(value, types) or isinstance(value, bool):
                raise damaged(f"{where}{key} should be {_type_name(types)}, got {type(value).__name__} {value!r:.60}")

    check(data, _TOP, "")
    if data["folds"] < 1:
        raise damaged(f"folds should be at least 1, got {data['folds']}")
    objective = data["config"].get("objective")
    if not isinstance(objective, dict) or not isinstance(objective.get("metric"), str) or objective.get("type") not in (
        "Maximize", "Minimize"
    ):
        raise damaged(f"config.objective should be {{metric: <name>, type: Maximize|Minimize}}, got {objective!r:.80}")
    if not isinstance(data["config"].get("entry_point"), str):
        raise damaged("config.entry_point is missing")
    for i, trial in enumerate(data["trials"]):
        if not isinstance(trial, dict):
            raise damaged(f"trials[{i}] should be an object, got {type(trial).__name__}")
        check(trial, _TRIAL, f"trials[{i}].")
        if len(trial["fold_scores"]) != data["folds"] or len(trial["fold_jobs"]) != data["folds"]:
            raise damaged(f"trials[{i}] should have {data['folds']} fold scores and fold jobs")
        for f, job in enumerate(trial["fold_jobs"]):
            if not isinstance(job, dict):
                raise damaged(f"trials[{i}].fold_jobs[{f}] should be an object, got {type(job).__name__}")
            check(job, _FOLD_JOB, f"trials[{i}].fold_jobs[{f}].")
    lease = data.get("lease")
    if lease is not None and not (isinstance(lease, dict) and isinstance(lease.get("expires"), _NUMBER)):
        raise damaged(f"lease should be null or an object with expires, got {lease!r:.80}")
    return data


def _type_name(types: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "dict": "an object", "list": "a list"}
    if isinstance(types, tuple):
        return "a number"
    return names.get(types.__name__, types.__name__)


class RunLedger:
    """A tuning run's state, backed by ``ledger.json`` in the artifact store."""

    def __init__(
        self, uri: str, data: dict[str, Any], token: str | None = None, store: ArtifactStore | None = None
    ) -> None:
        self.uri = uri
        self.data = data
        self.store = store or default_store()
        self.token = token  # the stored version this copy was read as / last written as
        self.owner: dict[str, Any] | None = None  # set while this process holds the run's lease
        self.lease_ttl_s = lease_.LEASE_TTL_S

    @classmethod
    def create(cls, uri: str, *, store: ArtifactStore | None = None, **fields: Any) -> RunLedger:
        """A new ledger at ``uri`` (refused if one exists); ``fields`` as :func:`new_ledger_data`."""
        ledger = cls(uri, new_ledger_data(**fields), store=store)
        ledger.save(create=True)
        return ledger

    @classmethod
    def load(cls, uri: str, store: ArtifactStore | None = None) -> RunLedger:
        store = store or default_store()
        try:
            raw, token = store.read_versioned(uri)
        except FileNotFoundError:
            raise ConfigError("ledger", f"no run ledger at {uri}", "check the run id and artifact root") from None
        return cls(uri, parse_ledger(uri, raw), token, store)

    def save(self, *, create: bool = False, release: bool = False) -> None:
        """Write the ledger, only over the version this copy was read as (or only if absent, ``create``).

        While this process holds the lease, each save is also its heartbeat. A write that finds the
        ledger changed raises :class:`~cvtune.errors.LedgerConflictError`: another driver wrote it,
        and this one must stop rather than overwrite it.
        """
        now = time.time()
        self.data["updated"] = now
        if release:  # the lease ends with this write (held until it succeeds)
            self.data["lease"] = None
        elif self.owner is not None:
            self.data["lease"] = {**self.owner, "acquired": (self.data.get("lease") or {}).get("acquired", now),
                                  "heartbeat": now, "expires": now + self.lease_ttl_s}
        body = (json.dumps(self.data, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")
        try:
            if create or self.token is None:
                self.token = self.store.write_bytes(self.uri, body, if_none_match=True)
            else:
                self.token = self.store.write_bytes(self.uri, body, if_match=self.token)
            if release:
                self.owner = None
        except PreconditionFailed:
            holder = self._current_holder()
            raise LedgerConflictError(
                f"run {self.data.get('run_id')}: the ledger {self.uri} was written by another driver since this one "
                f"read it ({holder}); this driver stops without overwriting it"
            ) from None

    def _current_holder(self) -> str:
        try:
            current = json.loads(self.store.read_bytes(self.uri))
        except Exception:  # noqa: BLE001 - only for the message
            return "its lease holder is unknown"
        held = current.get("lease") if isinstance(current, dict) else None
        return f"now driven by {lease_.describe(held)}" if held else "it holds no lease now"

    # -- the lease -------------------------------------------------------------------------
    def acquire(self, owner: dict[str, Any], ttl_s: float | None = None) -> None:
        """Take the run's lease for ``owner`` (:func:`cvtune.lease.new_owner`) with a conditional save.

        Raises :class:`~cvtune.errors.LeaseHeldError` naming the holder while another live process
        holds it; takes it over (and logs that) from a dead or expired holder.
        """
        if ttl_s is not None:
            self.lease_ttl_s = ttl_s
        for _ in range(5):
            held = self.data.get("lease")
            reason = lease_.vacancy(held, owner)
            if reason is None:
                raise LeaseHeldError(
                    f"run {self.run_id} is being driven by {lease_.describe(held or {})}; wait for it to finish, "
                    f"or stop it (its lease is taken over once the process is gone or the lease expired)",
                    holder=held,
                )
            if reason:
                log.warning("run %s: taking over the lease of %s: %s", self.run_id, lease_.describe(held or {}), reason)
                self.data.setdefault("lease_takeovers", []).append(
                    {"from": held, "to": owner["id"], "reason": reason, "at": time.time()}
                )
            self.owner = owner
            try:
                self.save()
                return
            except LedgerConflictError:  # another driver got in between: judge its lease afresh
                self.owner = None
                fresh = RunLedger.load(self.uri, self.store)
                self.data, self.token = fresh.data, fresh.token
        raise LeaseHeldError(f"run {self.run_id}: could not take the lease of {self.uri} (it keeps changing)")

    def release_lease(self) -> None:
        """Give the lease up (the run is finished or handed over) with a conditional save."""
        if self.owner is not None:
            self.save(release=True)

    def lease_due(self) -> bool:
        """Whether the held lease is past half its time since the last save (time to renew it)."""
        held = self.data.get("lease") or {}
        return self.owner is not None and time.time() >= float(held.get("expires", 0)) - self.lease_ttl_s / 2

    # -- accessors -------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        return self.data["run_id"]

    @property
    def status(self) -> str:
        return self.data["status"]

    @property
    def trials(self) -> list[dict[str, Any]]:
        return self.data["trials"]

    @property
    def maximize(self) -> bool:
        return self.data["config"]["objective"]["type"] == "Maximize"

    @property
    def objective_metric(self) -> str:
        return self.data["config"]["objective"]["metric"]

    def new_trial(self, params: dict[str, Any], hyperparameters: dict[str, Any], source: str | None = None) -> dict[str, Any]:
        number = len(self.trials)
        folds = self.data["folds"]
        trial = {
            "number": number,
            "params": params,
            "hyperparameters": hyperparameters,
            "source": source,
            "state": RUNNING,
            "started": time.time(),
            "ended": None,
            "mean": None,
            "std": None,
            "fold_scores": [None] * folds,
            "failure_reason": None,
            "fold_jobs": [
                {
                    "fold": f,
                    "job_name": fold_job_name(self.run_id, number, f),
                    "state": PENDING,
                    "objective": None,
                    "metrics": {},
                    "failure_reason": None,
                    "start_time": None,
                    "end_time": None,
                    "billable_seconds": None,
                    "warm_pool_status": None,
                }
                for f in range(folds)
            ],
        }
        self.trials.append(trial)
        return trial

    def completed_trials(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["state"] == COMPLETED and t["mean"] is not None]

    def inherited_trials(self) -> list[dict[str, Any]]:
        """Warm-start parents' completed trials on the same folds (IDENTICAL_DATA_AND_ALGORITHM)."""
        return self.data.get("inherited") or []

    def best_trial(self) -> dict[str, Any] | None:
        """The best completed trial, the parents' inherited ones included; ties: lower std, earlier."""
        own = [(0, t["number"], t) for t in self.completed_trials()]
        inherited = [(-1, i, t) for i, t in enumerate(self.inherited_trials())]
        done = inherited + own
        if not done:
            return None
        return min(done, key=lambda c: rank_key(c[2], self.maximize)[:2] + (c[0], c[1]))[2]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out

    def fold_jobs_launched(self) -> int:
        return sum(1 for t in self.trials for j in t["fold_jobs"] if j["state"] not in (PENDING, CANCELLED))

    def summary(self) -> dict[str, Any]:
        from cvtune.pools import billing

        best = self.best_trial()
        bill = billing(self.data)
        return {
            "run_id": self.run_id,
            "ledger": self.uri,
            "status": self.status,
            "objective": dict(self.data["config"]["objective"]),
            "best": None
            if best is None
            else {
                "trial": best["number"],
                "run_id": best.get("run_id", self.run_id),
                "hyperparameters": best["hyperparameters"],
                "params": best["params"],
                "mean": best["mean"],
                "std": best["std"],
                "fold_scores": best["fold_scores"],
            },
            "trials": self.counts(),
            "fold_jobs": self.fold_jobs_launched(),
            # job time + retained warm-pool time = instance-seconds (see cvtune.pools.billing)
            **bill,
            "warm_pool_reused": sum(
                1 for t in self.trials for j in t["fold_jobs"] if j.get("warm_pool_status") == "Reused"
            ),
            # wall time: time spent driving the run plus time it waited between drivers (deferred)
            "elapsed_s": round(self.data.get("elapsed_s", 0.0) + self.data.get("deferred_s", 0.0), 3),
            **({"deferrals": self.data["deferrals"]} if "deferrals" in self.data else {}),
        }

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per trial, like SageMaker's ``HyperparameterTuningJobAnalytics.dataframe()``."""
        out = []
        folds = self.data["folds"]
        for t in self.trials:
            row: dict[str, Any] = {"trial": t["number"], "state": t["state"]}
            row.update({f"param:{k}": v for k, v in t["params"].items()})
            row["mean"] = t["mean"]
            row["std"] = t["std"]
            for f in range(folds):
                row[f"fold_{f}"] = t["fold_scores"][f]
            starts = [j["start_time"] for j in t["fold_jobs"] if j.get("start_time")]
            ends = [j["end_time"] for j in t["fold_jobs"] if j.get("end_time")]
            row["duration_s"] = round(t["ended"] - t["started"], 3) if t.get("ended") else None
            row["fold_job_s"] = round(
                sum(j["end_time"] - j["start_time"] for j in t["fold_jobs"] if j.get("start_time") and j.get("end_time")),
                3,
            )
            row["billable_s"] = round(sum(j.get("billable_seconds") or 0 for j in t["fold_jobs"]), 3)
            row["retained_s"] = round(sum(j.get("retained_seconds") or 0 for j in t["fold_jobs"]), 3)
            row["first_job_start"] = min(starts) if starts else None
            row["last_job_end"] = max(ends) if ends else None
            row["failure_reason"] = t["failure_reason"]
            out.append(row)
        return out
