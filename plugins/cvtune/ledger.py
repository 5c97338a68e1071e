"""The run ledger: the durable record of one tuning run.

The ledger holds the config, every trial (its hyperparameters, fold job names, fold scores and
states) and the best trial. The tuner saves it after every change, *before* it acts on the
backend (a fold job is recorded as ``Launching`` before it is created), which is what lets a
retried task resume without launching any job twice.

Storage is a journal, as in Optuna's ``JournalStorage``: a snapshot (``ledger.json``, the whole
document) plus a tail of change records, so a save costs bytes in proportion to what changed,
not to the run:

* a **change record** holds the top-level keys whose value changed and the trials that changed
  (a new trial whole; of an open one, the fields and fold jobs that changed). Trials that ended with every fold
  job ended are frozen and never diffed again, so a save's CPU is bounded by the open trials.
  Records go to the snapshot's **segment**, ``journal/<seq>-<epoch>.jsonl`` next to the snapshot,
  one line each (one ``O_APPEND`` write; on an object store, one object per record,
  ``journal/<seq>-<epoch>/<record seq>.json``);
* a **snapshot** rewrites ``ledger.json`` once the tail has grown as large as the snapshot (so
  the bytes written per change stay bounded by twice the change, amortised), at the end of a
  run, and whenever the lease (below) needs its heartbeat. It names a fresh segment; the old
  one is deleted.

A reader (``RunLedger.load``: ``cvtune results``, the report, best-params, the sensor, a
resume) reads the snapshot and then its segment up to the first record that is missing, torn
or out of sequence; since a driver writes a segment only before the snapshot that replaces it,
what a reader sees is always a state the driver saved. Ledgers written before the journal (a
bare ``ledger.json``, version 1) load as they are and are rewritten as a snapshot on their next
save.

The single-driver lease (:mod:`cvtune.lease`) is its own small object next to the snapshot,
``lease.json`` (the holder, its heartbeat and expiry, a generation counted up at every
acquisition), so a heartbeat rewrites a few hundred bytes, not the run:

* **taking** the lease is a conditional write of ``lease.json`` over the version judged vacant
  (``if_match``; ``if_none_match`` when there is none). Taking it *over* (from a holder gone or
  expired) is followed by a **fencing snapshot**: the ledger is read again and written whole,
  conditionally, naming a fresh segment. From then on nothing the previous holder appends is read
  (its segment is no longer the snapshot's), and its own next snapshot fails (the ledger's version
  moved). A lease that was free (given up after the run's last snapshot) needs no fence: if the
  snapshot is still the version this copy read, its journal simply goes on (a deferred operator's
  poke then writes only ``lease.json``);
* **renewing** (the heartbeat, at half the lease's time) is a conditional write of ``lease.json``
  over the version this driver last wrote; it fails once another driver took the lease over;
* every write of the holder, append or snapshot, is **fenced** by the lease: when the lease is past
  half its time the driver renews it first, so a driver that stalled long enough to be taken over
  (the lease expired) learns it before it writes anything
  (:class:`~cvtune.errors.LedgerConflictError`), and within half its time nobody can take it over;
* **giving up** the lease (a run's end, a deferring operator, a sensor between pokes) writes what
  changed (at a run's end, the final snapshot) and then ``lease.json`` without a holder; the next
  driver takes the free lease and goes on with the same journal.

Every snapshot stays a conditional write over the version this copy read or last wrote. Ledgers
of version 2 or earlier carry the lease inside ``ledger.json``: they load, their lease is honoured
(a live holder is not taken over) and moves to ``lease.json`` at the first acquisition; the
snapshot then written is version 3, which earlier cvtune versions refuse to drive.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
import uuid
from typing import Any, TypedDict, cast

from cvtune import lease as lease_
from cvtune.errors import ConfigError, LeaseHeldError, LedgerConflictError
from cvtune.states import FOLD_DONE, RUN_ENDED, TRIAL_DONE, FoldState, RunStatus, TrialState, WarmPoolStatus
from cvtune.store import ArtifactStore, PreconditionFailed, default_store

log = logging.getLogger("cvtune.ledger")

LEDGER_VERSION = 3  # 3: the lease in lease.json; 2: snapshot + journal; 1 (a bare document) still loads
READABLE_VERSIONS = (1, 2, 3)
LEASE_FILE = "lease.json"  # next to ledger.json
# keys of the in-memory document that are not the snapshot's: the lease is read from lease.json
_NOT_STORED = frozenset({"lease"})
# a snapshot is due once the tail holds this share of the snapshot's bytes (and at least the floor)
SNAPSHOT_RATIO = 1.0
MIN_TAIL_BYTES = 64 * 1024
MAX_TAIL_RECORDS_REMOTE = 200  # object stores: each record is an object; keep LIST + GETs short


class _FoldJobKeys(TypedDict):  # required keys: a base class, so they show at runtime too
    fold: int
    job_name: str
    state: str  # a cvtune.states.FoldState


class FoldJobRecord(_FoldJobKeys, total=False):
    """A fold job in the ledger (``trials[i].fold_jobs[f]``); :func:`parse_ledger` checks the
    required keys of a ledger it reads."""

    objective: float | None
    metrics: dict[str, float]
    failure_reason: str | None
    start_time: float | None
    end_time: float | None
    billable_seconds: float | None
    warm_pool_status: str | None  # a cvtune.states.WarmPoolStatus
    # the warm pool the job left behind (cvtune.pools)
    pool_status: str | None
    pool_reused_by: str | None
    retained_seconds: float | None
    pool_final: bool
    pool_released: float | bool
    took_pool_of: str
    ended_seen_at: float


class _TrialKeys(TypedDict):
    number: int
    params: dict[str, Any]
    hyperparameters: dict[str, Any]
    state: str  # a cvtune.states.TrialState
    mean: float | None
    std: float | None
    fold_scores: list[float | None]
    fold_jobs: list[FoldJobRecord]


class TrialRecord(_TrialKeys, total=False):
    """A trial in the ledger (``trials[i]``, and a warm-start parent's in ``inherited``)."""

    source: str | None
    started: float
    ended: float | None
    failure_reason: str | None
    partial_mean: float  # a pruned trial's running mean when it was stopped
    run_id: str  # an inherited trial: the parent run it belongs to ...
    ledger: str  # ... and that run's ledger


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
        "status": RunStatus.IN_PROGRESS,
        "failure_reason": None,
        "created": now,
        "updated": now,
        "elapsed_s": 0.0,
        "config": config,
        "config_fingerprint": config_fingerprint,
        "manifest_uri": manifest.get("manifest_uri"),
        "manifest_fingerprint": manifest.get("fingerprint"),
        "manifest_files_fingerprint": manifest.get("files_fingerprint"),
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
    if data.get("version") not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS[:-1])) + f" or {READABLE_VERSIONS[-1]}"
        raise damaged(f"ledger version {data.get('version')!r}, this cvtune reads version {readable}")

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


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)


def _encode_trial(trial: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A trial as JSON per field and per fold job: what a change record is diffed against."""
    return ({k: _dumps(v) for k, v in trial.items() if k != "fold_jobs"}, [_dumps(j) for j in trial["fold_jobs"]])


def _frozen(trial: dict[str, Any]) -> bool:
    """A trial nothing will change any more: ended, and every fold job ended."""
    return trial["state"] in TRIAL_DONE and all(j["state"] in FOLD_DONE or j["state"] == FoldState.PENDING
                                                for j in trial["fold_jobs"])


class _Retake(Exception):
    """The lease just taken was taken by another driver before the fencing snapshot: judge afresh."""


class RunLedger:
    """A tuning run's state, backed by a snapshot (``ledger.json``) and a journal in the store."""

    def __init__(
        self, uri: str, data: dict[str, Any], token: str | None = None, store: ArtifactStore | None = None
    ) -> None:
        self._uri = uri
        self.data = data
        self.store = store or default_store()
        self.token = token  # the snapshot's stored version this copy was read as / last written as
        self.owner: dict[str, Any] | None = None  # set while this process holds the run's lease
        self.lease_ttl_s = lease_.LEASE_TTL_S
        self.bytes_written = 0  # by this object's saves: what benchmarks/scale.py reports
        self.snapshots_written = 0
        self.lease_writes: list[int] = []  # bytes of each lease.json write (taking, heartbeats, giving up)
        self.lease_token: str | None = None  # lease.json's version as this copy read or last wrote it
        self.lease_generation = 0
        self._tail_bytes = 0
        self._tail_records = 0
        self._snapshot_bytes = 0
        self._seq = int((data.get("journal") or {}).get("seq", 0))
        # what the store holds, to diff against: top-level values as JSON, open trials as JSON
        self._stored_top: dict[str, Any] | None = None
        self._stored_trials = 0
        self._open: dict[int, Any] = {}  # trial number -> _encode_trial() as last written
        self._pending: tuple[dict[str, Any], dict[int, Any]] = ({}, {})

    @property
    def uri(self) -> str:
        return self._uri

    @uri.setter
    def uri(self, value: str) -> None:
        if value != self._uri:  # saved somewhere else: the next save writes it whole there
            self._uri = value
            self._stored_top = None
            self.token = None

    @classmethod
    def create(cls, uri: str, *, store: ArtifactStore | None = None, **fields: Any) -> RunLedger:
        """A new ledger at ``uri`` (refused if one exists); ``fields`` as :func:`new_ledger_data`."""
        ledger = cls(uri, new_ledger_data(**fields), store=store)
        ledger.save(create=True)
        return ledger

    @classmethod
    def load(cls, uri: str, store: ArtifactStore | None = None) -> RunLedger:
        """The run's state: the snapshot plus its journal tail (see the module docstring)."""
        store = store or default_store()
        try:
            raw, token = store.read_versioned(uri)
        except FileNotFoundError:
            raise ConfigError("ledger", f"no run ledger at {uri}", "check the run id and artifact root") from None
        data = parse_ledger(uri, raw)
        ledger = cls(uri, data, token, store)
        ledger._replay_tail()
        ledger._snapshot_bytes = len(raw)
        ledger._mark_stored()
        ledger._read_lease()
        return ledger

    def _adopt(self, other: RunLedger) -> None:
        """Take over another copy's state and journal position (a fresh load of the same run)."""
        for key in ("data", "token", "_seq", "_tail_bytes", "_tail_records", "_snapshot_bytes", "_stored_top",
                    "_stored_trials", "_open", "lease_token", "lease_generation"):
            setattr(self, key, getattr(other, key))

    # -- storage ---------------------------------------------------------------------------
    def _run_dir(self) -> str:
        return self.uri.rsplit("/", 1)[0]

    def _segment_uri(self, name: str) -> str:
        return self.store.join(self._run_dir(), name)

    def _lease_uri(self) -> str:
        return self.store.join(self._run_dir(), LEASE_FILE)

    def _read_lease(self) -> dict[str, Any] | None:
        """Read ``lease.json`` (its holder into ``data["lease"]``, its version into ``lease_token``);
        without one (a ledger of version 2 or earlier, or a run created by nobody holding it), the
        lease the snapshot carries, if any, stands. Returns the holder."""
        try:
            raw, token = self.store.read_versioned(self._lease_uri())
        except FileNotFoundError:
            self.lease_token = None
            return self.data.get("lease")
        try:
            doc = json.loads(raw)
            holder = doc["holder"]
            if holder is not None and not isinstance(holder.get("expires"), _NUMBER):
                raise ValueError("holder without expires")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"lease {self._lease_uri()}", f"not a cvtune lease ({exc})",
                              "delete it if no process drives the run (the next driver writes a new one)") from None
        self.lease_token = token
        self.lease_generation = int(doc.get("generation", 0))
        self.data["lease"] = holder
        return holder

    def _write_lease(self, holder: dict[str, Any] | None) -> None:
        """Write ``lease.json`` over the version this copy holds (or only if absent);
        :class:`~cvtune.store.PreconditionFailed` when another driver wrote it since."""
        generation = self.lease_generation + (1 if holder is not None and holder.get("id") != (
            self.data.get("lease") or {}).get("id") else 0)
        body = (_dumps({"run_id": self.data.get("run_id"), "generation": generation, "holder": holder}) + "\n").encode()
        if self.lease_token is None:
            token = self.store.write_bytes(self._lease_uri(), body, if_none_match=True)
        else:
            token = self.store.write_bytes(self._lease_uri(), body, if_match=self.lease_token)
        self.lease_token, self.lease_generation = token, generation
        self.data["lease"] = holder
        self.lease_writes.append(len(body))
        self.bytes_written += len(body)

    def _mark_stored(self) -> None:
        self._stored_top = {k: (v if k == "inherited" else _dumps(v)) for k, v in self.data.items()
                            if k != "trials" and k not in _NOT_STORED}
        self._stored_trials = len(self.trials)
        self._open = {t["number"]: _encode_trial(t) for t in self.trials if not _frozen(t)}

    def _foreign_records(self, journal: dict[str, Any]) -> bool:
        """Whether the segment holds records beyond the ones this copy has seen."""
        probe = RunLedger(self.uri, {"journal": journal, "trials": []}, store=self.store)
        probe._apply = lambda record: None  # type: ignore[method-assign]  # count, don't apply
        try:
            probe._replay_tail()
        except FileNotFoundError:
            return False
        return probe._seq > self._seq

    def _replay_tail(self) -> None:
        journal = self.data.get("journal")
        if not journal:
            return
        seq = int(journal["seq"])
        segment = self._segment_uri(journal["segment"])
        if self.store.is_local(segment):
            try:
                raw = self.store.read_bytes(segment)
            except FileNotFoundError:
                # no record since the snapshot, or a newer snapshot replaced it after we read
                # ours: either way the snapshot alone is a state the driver saved
                raw = b""
            lines = raw.split(b"\n")
            records = []
            for line in lines[:-1]:  # the part after the last newline is a torn write, or empty
                try:
                    records.append(json.loads(line))
                except ValueError:
                    break
            self._tail_bytes = sum(len(line) + 1 for line in lines[: len(records)])
        else:
            try:
                names = self.store.listdir(segment)
            except FileNotFoundError:
                names = []
            records = []
            for name in sorted(names):
                try:
                    body = self.store.read_bytes(self.store.join(segment, name))
                    records.append(json.loads(body))
                    self._tail_bytes += len(body)
                except (FileNotFoundError, ValueError):
                    break
        for record in records:
            if record.get("seq") != seq + 1:
                break  # a gap or a stale record: the state up to here is the saved one
            self._apply(record)
            seq += 1
            self._tail_records += 1
        self._seq = seq

    def _apply(self, record: dict[str, Any]) -> None:
        self.data.update(record.get("set") or {})
        for key in record.get("del") or ():
            self.data.pop(key, None)
        trials = self.data["trials"]
        for number, trial in sorted(((int(n), t) for n, t in (record.get("trials") or {}).items())):
            if number < len(trials):
                trials[number] = trial
            elif number == len(trials):
                trials.append(trial)
            else:
                raise ConfigError("ledger", f"{self.uri}: journal record {record.get('seq')} skips trial {len(trials)}",
                                  "the journal is damaged; restore the run directory from a backup")
        for number, changed in (record.get("fields") or {}).items():
            trials[int(number)].update(changed)
        for number, changed in (record.get("jobs") or {}).items():
            fold_jobs = trials[int(number)]["fold_jobs"]
            for index, job in changed.items():
                fold_jobs[int(index)] = job

    def _changes(self) -> dict[str, Any]:
        """What changed since the last write: top-level keys and open or new trials."""
        stored = self._stored_top or {}
        changed: dict[str, Any] = {}
        encoded: dict[str, Any] = {}
        for key, value in self.data.items():
            if key == "trials" or key in _NOT_STORED:
                continue
            enc = value if key == "inherited" else _dumps(value)
            encoded[key] = enc
            if key not in stored or (stored[key] is not enc if key == "inherited" else stored[key] != enc):
                changed[key] = value
        deleted = [k for k in stored if k not in self.data]
        trials: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        jobs: dict[str, Any] = {}
        trial_json: dict[int, Any] = {}
        for number in range(self._stored_trials, len(self.trials)):  # new: written whole
            trial_json[number] = _encode_trial(self.trials[number])
            trials[str(number)] = self.trials[number]
        for number, (old_fields, old_jobs) in self._open.items():  # open: what changed in them
            trial = self.trials[number]
            new_fields, new_jobs = trial_json[number] = _encode_trial(trial)
            changed_fields = {k: trial[k] for k, v in new_fields.items() if old_fields.get(k) != v}
            if changed_fields:
                fields[str(number)] = changed_fields
            changed_jobs = {str(i): trial["fold_jobs"][i] for i, v in enumerate(new_jobs)
                            if i >= len(old_jobs) or old_jobs[i] != v}
            if changed_jobs:
                jobs[str(number)] = changed_jobs
        record: dict[str, Any] = {}
        if changed:
            record["set"] = changed
        if deleted:
            record["del"] = deleted
        if trials:
            record["trials"] = trials
        if fields:
            record["fields"] = fields
        if jobs:
            record["jobs"] = jobs
        self._pending = (encoded, trial_json)
        return record

    def _snapshot_due(self) -> bool:
        if self._stored_top is None or "journal" not in self.data:
            return True
        status = self.data.get("status")
        if status in RUN_ENDED and self._stored_top.get("status") != _dumps(status):
            return True  # a run's end: its ledger.json alone then holds it
        if not self.store.is_local(self.uri) and self._tail_records >= MAX_TAIL_RECORDS_REMOTE:
            return True
        return self._tail_bytes >= max(MIN_TAIL_BYTES, SNAPSHOT_RATIO * self._snapshot_bytes)

    def save(self, *, create: bool = False, release: bool = False) -> None:
        """Persist what changed: one journal record, or a snapshot when one is due (see the
        module docstring: a run's end, a long tail, a lease taken over); ``release`` then gives
        the lease up. The holder's writes are fenced by its lease: past half its time, it is
        renewed first."""
        self.data["updated"] = time.time()
        if not create:
            self._fence()
        # only the lease holder appends (its records are numbered in one sequence); any other
        # copy writes a snapshot, which is conditional and checks the journal (see snapshot())
        if create or self.token is None or self.owner is None or self._snapshot_due():
            self.snapshot(create=create, release=release)
            return
        self._append(clocks=release)  # handing over: the next driver reads the clocks too
        if release:
            self._give_up_lease()

    def _append(self, *, clocks: bool) -> None:
        record = self._changes()
        encoded, trial_json = self._pending
        if not record or (not clocks and set(record) == {"set"} and set(record["set"]) <= {"updated", "elapsed_s"}):
            return  # nothing but the clocks
        self._seq += 1
        record = {"seq": self._seq, **record}
        body = (_dumps(record) + "\n").encode("utf-8")
        segment = self._segment_uri(self.data["journal"]["segment"])
        if not self.store.append_bytes(segment, body):
            self.store.write_bytes(self.store.join(segment, f"{self._seq:012d}.json"), body)
        self.bytes_written += len(body)
        self._tail_bytes += len(body)
        self._tail_records += 1
        self._stored_top = encoded
        self._stored_trials = len(self.trials)
        for number, enc in trial_json.items():
            if _frozen(self.trials[number]):
                self._open.pop(number, None)
            else:
                self._open[number] = enc

    def snapshot(self, *, create: bool = False, release: bool = False) -> None:
        """Write the whole document as the new snapshot, with a fresh (empty) segment.

        Only over the version this copy was read as (or only if absent, ``create``). While this
        process holds the lease, each snapshot is also its heartbeat. A write that finds the
        ledger changed raises :class:`~cvtune.errors.LedgerConflictError`: another driver wrote
        it, and this one must stop rather than overwrite it.
        """
        now = time.time()
        old = (self.data.get("journal") or {}).get("segment")
        self.data["updated"] = now
        self.data["version"] = LEDGER_VERSION
        journal = self.data.get("journal")
        if not create and self.owner is None and journal and self._foreign_records(journal):
            # the lease holder appended since this copy was read: its snapshot would drop them
            raise LedgerConflictError(
                f"run {self.data.get('run_id')}: the ledger {self.uri} was written by another driver since this one "
                f"read it ({self._current_holder()}); this driver stops without overwriting it"
            )
        self.data["journal"] = {"seq": self._seq, "segment": f"journal/{self._seq:012d}-{uuid.uuid4().hex[:8]}.jsonl"}
        body = (_dumps({k: v for k, v in self.data.items() if k not in _NOT_STORED}) + "\n").encode("utf-8")
        try:
            if create or self.token is None:
                self.token = self.store.write_bytes(self.uri, body, if_none_match=True)
            else:
                self.token = self.store.write_bytes(self.uri, body, if_match=self.token)
        except PreconditionFailed:
            if journal is None:
                self.data.pop("journal", None)
            else:
                self.data["journal"] = journal
            holder = self._current_holder()
            raise LedgerConflictError(
                f"run {self.data.get('run_id')}: the ledger {self.uri} was written by another driver since this one "
                f"read it ({holder}); this driver stops without overwriting it"
            ) from None
        self.bytes_written += len(body)
        self.snapshots_written += 1
        self._snapshot_bytes = len(body)
        self._tail_bytes = 0
        self._tail_records = 0
        self._mark_stored()
        if create and self.owner is not None:  # a new run: its creator takes the lease
            try:
                self._write_lease(self._holder(now))
            except PreconditionFailed:  # a lease.json is there already: judged by acquire()
                self.owner = None
                raise LedgerConflictError(
                    f"run {self.data.get('run_id')}: {self._lease_uri()} names a driver already "
                    f"({self._current_holder()})"
                ) from None
        elif release and self.owner is not None:
            self._give_up_lease()
        if old:
            try:
                self.store.remove(self._segment_uri(old))
            except OSError:  # a leftover segment is only disk: no reader follows it any more
                pass

    def _current_holder(self) -> str:
        try:
            held = json.loads(self.store.read_bytes(self._lease_uri())).get("holder")
        except FileNotFoundError:  # a ledger of version 2 or earlier: the lease is in the snapshot
            try:
                current = json.loads(self.store.read_bytes(self.uri))
                held = current.get("lease") if isinstance(current, dict) else None
            except Exception:  # noqa: BLE001 - only for the message
                return "its lease holder is unknown"
        except Exception:  # noqa: BLE001 - only for the message
            return "its lease holder is unknown"
        return f"now driven by {lease_.describe(held)}" if held else "it holds no lease now"

    # -- the lease -------------------------------------------------------------------------
    def acquire(self, owner: dict[str, Any], ttl_s: float | None = None) -> None:
        """Take the run's lease for ``owner`` (:func:`cvtune.lease.new_owner`): a conditional write
        of ``lease.json`` and, taking it over, the fencing snapshot (module docstring).

        Raises :class:`~cvtune.errors.LeaseHeldError` naming the holder while another live process
        holds it; takes it over (and logs that) from a dead or expired holder.
        """
        if ttl_s is not None:
            self.lease_ttl_s = ttl_s
        for _ in range(5):
            held = self._read_lease()  # lease.json's holder; without one, the lease a version-2 snapshot carries
            reason = lease_.vacancy(held, owner)
            if reason is None:
                raise LeaseHeldError(
                    f"run {self.run_id} is being driven by {lease_.describe(held or {})}; wait for it to finish, "
                    f"or stop it (its lease is taken over once the process is gone or the lease expired)",
                    holder=held,
                )
            now = time.time()
            try:
                self._write_lease(self._holder(now, held if (held or {}).get("id") == owner["id"] else None, owner))
            except PreconditionFailed:  # another driver got in between: judge its lease afresh
                self._reload()
                continue
            if reason:
                log.warning("run %s: taking over the lease of %s: %s", self.run_id, lease_.describe(held or {}), reason)
            self.owner = owner
            try:
                self._fence_after_acquire(owner, held, reason, now)
                return
            except LeaseHeldError:
                raise
            except _Retake:
                continue
            except BaseException:
                # the lease is ours but this driver stops before driving: a later one in this process
                # may take it over at once (another process judges by our pid)
                lease_.abandon(owner)
                raise
        raise LeaseHeldError(f"run {self.run_id}: could not take the lease of {self.uri} (it keeps changing)")

    def _fence_after_acquire(self, owner: dict[str, Any], held: dict[str, Any] | None, reason: str, now: float) -> None:
        """After ``lease.json`` became ``owner``'s: go on with the journal as read, or fence it with a
        snapshot (module docstring). Raises :class:`_Retake` when the lease was taken from us meanwhile."""
        mine = self.data["lease"]
        if not reason and int(self.data.get("version", 0)) >= LEDGER_VERSION and self._as_read():
            # the lease was free (given up after its holder's last write) or already ours, and the
            # run is still as this copy read it: its journal goes on, no snapshot needed
            return
        for _ in range(5):
            # the fencing snapshot (a fresh segment; version 3, which earlier cvtune does not drive),
            # over the run read again: a holder that lost its lease, or one that gave it up after
            # this copy was read, may have written since
            self._reload()
            if (self.data.get("lease") or {}).get("id") != mine["id"]:  # taken from us already
                self.owner = None
                raise _Retake
            if reason:
                self.data.setdefault("lease_takeovers", []).append(
                    {"from": held, "to": owner["id"], "reason": reason, "at": now}
                )
            try:
                self.snapshot()
                return
            except LedgerConflictError:  # the previous holder snapshotted meanwhile: read it again
                continue
        raise LeaseHeldError(f"run {self.run_id}: could not write {self.uri} after taking its lease "
                             "(it keeps changing)")

    def _as_read(self) -> bool:
        """Whether the snapshot and its journal are still exactly what this copy read."""
        journal = self.data.get("journal")
        try:
            return (journal is not None and self.store.version_token(self.uri) == self.token
                    and not self._foreign_records(journal))
        except FileNotFoundError:
            return False

    def _reload(self) -> None:
        """Read the run afresh, keeping what the caller set on this copy before taking the lease
        (the tuner records the code fingerprint and budget changes)."""
        kept: dict[str, Any] = {k: self.data[k] for k in ("code_sha256", "config") if k in self.data}
        self._adopt(RunLedger.load(self.uri, self.store))
        self.data.update(kept)

    def _holder(self, now: float, previous: dict[str, Any] | None = None,
                owner: dict[str, Any] | None = None) -> dict[str, Any]:
        """The lease record of ``owner`` (this copy's) as of ``now``, valid for ``lease_ttl_s``."""
        owner = owner if owner is not None else self.owner
        assert owner is not None
        return {**owner, "acquired": (previous or {}).get("acquired", now), "heartbeat": now,
                "expires": now + self.lease_ttl_s}

    def _fence(self) -> None:
        """Before the holder writes: renew its lease when it is past half its time. Raises
        :class:`~cvtune.errors.LedgerConflictError` if another driver took it over meanwhile."""
        if self.owner is not None and self.lease_due():
            self.renew_lease()

    def renew_lease(self) -> None:
        """The heartbeat: rewrite ``lease.json`` (a few hundred bytes), conditionally."""
        if self.owner is None:
            return
        now = time.time()  # before the write: the lease this write grants is never longer than claimed
        try:
            self._write_lease(self._holder(now, self.data.get("lease")))
        except PreconditionFailed:
            holder = self._current_holder()
            self.owner = None
            raise LedgerConflictError(
                f"run {self.data.get('run_id')}: the lease {self._lease_uri()} was taken over by another driver "
                f"({holder}); this driver stops without writing the ledger {self.uri} again"
            ) from None

    def _give_up_lease(self) -> None:
        try:
            self._write_lease(None)
        except PreconditionFailed:  # taken over after our last write: nothing of ours to give up
            pass
        self.owner = None

    def release_lease(self) -> None:
        """Give the lease up (the run is finished or handed over): the final snapshot, then the lease."""
        if self.owner is not None:
            self.save(release=True)

    def lease_due(self) -> bool:
        """Whether the held lease is past half its time since it was last written (time to renew it)."""
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
        fold_jobs: list[FoldJobRecord] = [
            {
                "fold": f,
                "job_name": fold_job_name(self.run_id, number, f),
                "state": FoldState.PENDING,
                "objective": None,
                "metrics": {},
                "failure_reason": None,
                "start_time": None,
                "end_time": None,
                "billable_seconds": None,
                "warm_pool_status": None,
            }
            for f in range(folds)
        ]
        trial: TrialRecord = {
            "number": number,
            "params": params,
            "hyperparameters": hyperparameters,
            "source": source,
            "state": TrialState.RUNNING,
            "started": time.time(),
            "ended": None,
            "mean": None,
            "std": None,
            "fold_scores": [None] * folds,
            "failure_reason": None,
            "fold_jobs": fold_jobs,
        }
        # the document's trials stay plain dicts for the code that reads them; the record's shape
        # is what mypy checks here, where every trial is made (the same object: callers update it)
        record = cast(dict[str, Any], trial)
        self.trials.append(record)
        return record

    def completed_trials(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t["state"] == TrialState.COMPLETED and t["mean"] is not None]

    def inherited_trials(self) -> list[dict[str, Any]]:
        """Warm-start parents' completed trials on the same folds (IDENTICAL_DATA_AND_ALGORITHM)."""
        return self.data.get("inherited") or []

    def best_trial(self) -> dict[str, Any] | None:
        """The best completed trial, the parents' inherited ones included (:mod:`cvtune.ranking`)."""
        from cvtune.ranking import ranked_candidates

        top = ranked_candidates([self], self.maximize)
        return top[0].trial if top else None

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t["state"]] = out.get(t["state"], 0) + 1
        return out

    def fold_jobs_launched(self) -> int:
        return sum(1 for t in self.trials for j in t["fold_jobs"] if j["state"] not in (FoldState.PENDING, FoldState.CANCELLED))

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
                1 for t in self.trials for j in t["fold_jobs"] if j.get("warm_pool_status") == WarmPoolStatus.REUSED
            ),
            # wall time: time spent driving the run plus time it waited between drivers (deferred)
            "elapsed_s": round(self.data.get("elapsed_s", 0.0) + self.data.get("deferred_s", 0.0), 3),
            # why no more trials were asked: {criterion, detail} (cvtune.completion, max_trials, ...)
            "stop_reason": self.data.get("stop_reason"),
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
