"""The CV tuner: asks candidates, fans each out into one fold job per fold, gathers fold scores.

Scheduling is asynchronous: up to ``max_parallel_trials`` candidates are in flight and up to
``max_parallel_jobs`` fold jobs run at once; the moment a trial finishes the next candidate is
asked — there is no round barrier. Folds launch oldest trial first, fold 0 first, so every
trial's folds run in the same order.

Crash safety comes from the ledger: a fold job is written as ``Launching`` before the backend
is asked to create it, so a resumed run either finds the job (and re-attaches) or knows it was
never created. Job names are deterministic, so nothing is launched twice.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from typing import Any

from cvtune import lease as lease_
from cvtune import ledger as L
from cvtune import store
from cvtune.backends.base import Backend, JobDescription, JobSpec
from cvtune.config import BUDGET_KEYS, TuningConfig, entry_point_sha256
from cvtune.errors import ConfigError, JobExistsError, JobNotFoundError, LedgerConflictError, RunFailedError
from cvtune.proposers import FixedProposer, Proposal, make_proposer
from cvtune.ranking import rank_key, rankable
from cvtune.sourcedir import code_sha256, source_dir
from cvtune.states import (
    COMPLETION_CRITERIA,
    FOLD_ACTIVE,
    FOLD_DONE,
    TRIAL_DONE,
    FoldState,
    JobStatus,
    RunStatus,
    StopCriterion,
    TrialState,
)
from cvtune.stopping import make_stopper
from cvtune.store import ArtifactStore, default_store

log = logging.getLogger("cvtune.tuner")

RUN_ID_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,49}$")
TAG_RUN, TAG_TRIAL, TAG_FOLD = "cvtune:run", "cvtune:trial", "cvtune:fold"


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise ConfigError(
            "run_id",
            f"{run_id!r} is not a valid run id",
            "use 1-50 letters, digits and hyphens, starting with a letter or digit "
            "(fold job names `{run}-t0000-f0` must stay valid SageMaker names)",
        )
    return run_id


def ledger_uri(artifact_root: str, run_id: str) -> str:
    return store.join(artifact_root, "runs", run_id, "ledger.json")


def artifact_root_of(uri: str, run_id: str) -> str:
    """The artifact root a run's ledger lives under (inverse of :func:`ledger_uri`)."""
    suffix = f"/runs/{run_id}/ledger.json"
    if uri.endswith(suffix) and ledger_uri(uri[: -len(suffix)], run_id) == uri:
        return uri[: -len(suffix)]
    raise ConfigError(
        "ledger",
        f"{uri} is not where run {run_id} keeps its ledger ({{artifact_root}}/runs/{run_id}/ledger.json)",
        "pass the ledger URI the run wrote (the operator's `ledger` output)",
    )


class CVTuner:
    """One tuning run over a fold manifest on a backend, recorded in a ledger.

    ``proposer`` defaults to the config's strategy; pass a :class:`FixedProposer` to evaluate
    given candidates. ``on_trial_end`` is called with each finished trial (progress hooks).
    """

    def __init__(
        self,
        config: TuningConfig,
        manifest: dict[str, Any],
        backend: Backend,
        *,
        run_id: str,
        artifact_root: str,
        proposer: Any = None,
        kind: str = "tune",
        poll_s: float = 5.0,
        ledger_extra: dict[str, Any] | None = None,
        warm_start: Any = None,
        lease_label: str | None = None,
        lease_ttl_s: float | None = None,
        _ledger: L.RunLedger | None = None,
        store: ArtifactStore | None = None,
    ) -> None:
        self.config = config
        self.store = store or default_store()
        self.manifest = manifest
        self.backend = backend
        self.run_id = validate_run_id(run_id)
        self.poll_s = poll_s
        self.uri = ledger_uri(artifact_root, run_id)
        self.kind = kind
        self.ledger_extra = ledger_extra or {}
        self._handles: dict[int, Proposal] = {}
        self._exhausted = False
        self._jobs: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._session_start = time.monotonic()
        self._elapsed_before = 0.0
        self._extra_trials = 0
        self._owner = lease_.new_owner(lease_label)
        self._lease_ttl_s = lease_ttl_s
        self._convergence_checked_at = -1
        self._convergence_reason: str | None = None
        self._code_sha256 = code_sha256(config.entry_point, exclude=self._not_code(artifact_root))
        if warm_start is not None:
            from cvtune import warmstart

            warmstart.validate(config, manifest, warm_start, code_sha256=self._code_sha256)
            self.ledger_extra = {
                **self.ledger_extra,
                "warm_start": warm_start.to_dict(),
                "warm_start_top_per_parent": warm_start.top_per_parent,  # what resume() needs besides
                "inherited": warmstart.inherited_trials(warm_start),
            }
        self.ledger = self._open_ledger(_ledger)
        self._index()
        from cvtune.pools import PoolKeeper

        self._pools = PoolKeeper(self.ledger, backend, lookup=lambda name: self._jobs.get(name, (None, None))[1])
        # A resumed sampler must not replay the random draws of the first attempt (it would
        # re-propose the same candidates): its seed moves on with the trials already asked.
        restored = len(self.ledger.trials)
        seed = config.seed
        if warm_start is not None:
            from cvtune import warmstart

            seed = warmstart.sampler_seed(seed, warm_start)
        seed = seed if restored == 0 else (seed * 1_000_003 + restored) % 2**31
        self.stopper = make_stopper(config.strategy, config.early_stopping, len(manifest["folds"]))
        self._proposer = proposer or make_proposer(
            config.space, config.strategy, config.objective.direction, seed, config.max_parallel_trials
        )
        # the run's own trials, fed to the sampler when it is first needed (see ``proposer``)
        self._unreplayed: list[tuple[dict[str, Any], float | None, str, list[float]]] = []
        if warm_start is not None and proposer is None:
            from cvtune import warmstart

            seen = warmstart.history(warm_start, config.space)
            for params, value, state, intermediate in seen:
                self._proposer.observe(params, value, state, intermediate)
            self._proposer = warmstart.WarmStartProposer(
                self._proposer, warmstart.first_candidates(warm_start, config.space), tried=[h[0] for h in seen]
            )
            log.info(
                "warm start (%s) from %d parent run(s): %s", warm_start.type, len(warm_start.parents),
                ", ".join(p.run_id for p in warm_start.parents),
            )

    @property
    def proposer(self) -> Any:
        """The sampler, with every trial of the run observed.

        A resumed driver replays the ledger's trials into it only here, on first use: a deferred
        poke or a sensor step that finds no job ended asks nothing, so it does not pay for
        rebuilding the sampler's history (Optuna adds every trial to its study), which grows with
        the run (issue 14: "The deferred path rebuilds nothing per poke that grows with the run
        beyond the sampler's own needs").
        """
        if self._unreplayed:
            pending, self._unreplayed = self._unreplayed, []
            for params, value, state, intermediate in pending:
                self._proposer.observe(params, value, state, intermediate)
        return self._proposer

    @classmethod
    def resume(
        cls, uri: str, backend: Backend, *, poll_s: float = 5.0, lease_label: str | None = None,
        lease_ttl_s: float | None = None, store: ArtifactStore | None = None,
    ) -> CVTuner:
        """The tuner of an existing run, rebuilt from its ledger alone.

        The ledger holds everything a driver needs: the tuning config (with the latest budget),
        the manifest URI, the warm-start parents; its location gives the run id and artifact root.
        Any process can so pick a run up where another left it (a resumed deferred task, a sensor):
        the usual checks apply (same config and data fingerprints; re-attach to the ledger's jobs
        by name and tags, so nothing is launched twice).
        """
        from cvtune.config import parse_config
        from cvtune.folds import load_manifest

        store = store or default_store()
        ledger = L.RunLedger.load(uri, store)  # loaded once: the tuner below takes this copy
        data = ledger.data
        run_id = data["run_id"]
        if data.get("kind", "tune") != "tune":
            raise ConfigError(
                "ledger", f"run {run_id} is a {data['kind']} run; only tuning runs can be resumed from their ledger",
                "re-run the task that started it",
            )
        warm_start = None
        if data.get("warm_start"):
            from cvtune import warmstart

            ws = data["warm_start"]
            warm_start = warmstart.WarmStart(
                ws["type"], warmstart.load_parents(ws["parents"], field_name="warm_start.parents", store=store),
                top_per_parent=data.get("warm_start_top_per_parent", 1), uris=list(ws.get("requested") or []),
            )
        return cls(
            parse_config(dict(data["config"]), base_dir=None, source=uri),
            load_manifest(data["manifest_uri"], store),
            backend,
            run_id=run_id,
            artifact_root=artifact_root_of(uri, run_id),
            poll_s=poll_s,
            warm_start=warm_start,
            lease_label=lease_label,
            lease_ttl_s=lease_ttl_s,
            _ledger=ledger,
            store=store,
        )

    def _not_code(self, artifact_root: str) -> list[str]:
        """Local folders left out of the code fingerprint when the entry point's folder holds them:
        what the run writes while it runs (artifact root, job folders), and the fold data, which
        the manifest's own fingerprints check."""
        uris = [artifact_root]
        for fold in self.manifest.get("folds") or ():
            uris += [fold.get("train_uri") or "", fold.get("validation_uri") or ""]
        local = [store.local_path(u) for u in uris if u and store.is_local(u)]
        manifest_uri = self.manifest.get("manifest_uri")
        if manifest_uri and store.is_local(manifest_uri):
            local.append(os.path.dirname(store.local_path(manifest_uri)))  # the split's folder, manifest included
        return local + self.backend.local_dirs

    # -- ledger ----------------------------------------------------------------------------
    def _open_ledger(self, loaded: L.RunLedger | None = None) -> L.RunLedger:
        """Load (or create) the run's ledger and take its lease: from here on this process drives it."""
        if loaded is None and not self.store.exists(self.uri):
            ledger = L.RunLedger(self.uri, self._new_ledger_data(), store=self.store)
            ledger.owner = self._owner
            if self._lease_ttl_s is not None:
                ledger.lease_ttl_s = self._lease_ttl_s
            try:
                ledger.save(create=True)
                return ledger
            except LedgerConflictError:  # created by another driver just now: judge its lease below
                pass
        ledger = loaded if loaded is not None else L.RunLedger.load(self.uri, self.store)
        fingerprint = self.config.fingerprint()
        if ledger.data["config_fingerprint"] != fingerprint:
            raise ConfigError(
                "run_id",
                f"run {self.run_id} already exists with a different tuning config (ledger {self.uri})",
                "use a new run id, or restore the config (objective, ranges, static hyperparameters, script) it was started with",
            )
        recorded_code = ledger.data.get("code_sha256")
        if recorded_code is None:  # a ledger from before it was recorded: from now on it is
            ledger.data["code_sha256"] = self._code_sha256
        elif recorded_code != self._code_sha256:
            raise ConfigError(
                "run_id",
                f"run {self.run_id} already exists with different training code: a file in "
                f"{source_dir(self.config.entry_point)} (the folder shipped with the entry point) changed since "
                f"it started (ledger {self.uri})",
                "use a new run id, or restore the code the run was started with",
            )
        if ledger.data["manifest_fingerprint"] != self.manifest.get("fingerprint"):
            raise ConfigError(
                "run_id",
                f"run {self.run_id} already exists on different data (manifest fingerprint differs)",
                "use a new run id for new data",
            )
        recorded = ledger.data.get("manifest_files_fingerprint")
        if recorded and recorded != self.manifest.get("files_fingerprint"):
            raise ConfigError(
                "manifest",
                f"run {self.run_id} started on other fold files than {self.manifest.get('manifest_uri')} lists now "
                "(the split was rewritten)",
                "split into a new out_uri and start a new run there",
            )
        # budget settings may change between attempts (e.g. a larger max_trials)
        ledger.data["config"].update(
            {k: v for k, v in self.config.to_dict().items() if k in BUDGET_KEYS}
        )
        self._elapsed_before = ledger.data.get("elapsed_s", 0.0)
        ledger.acquire(self._owner, self._lease_ttl_s)
        log.info("resuming run %s: %s", self.run_id, ledger.counts() or "no trials yet")
        return ledger

    def _index(self) -> None:
        """Scan the ledger once for what every event needs, then keep it up to date as trials change:
        an event (a job ended, a trial asked) then costs in proportion to the open trials, not to the run.

        ``_active`` holds the trials still running or with a job in flight (a failed trial's jobs
        are in flight until their stop is recorded), in trial order.
        """
        trials = self.ledger.trials
        self._active: dict[int, Any] = {
            t["number"]: t for t in trials
            if t["state"] == TrialState.RUNNING or any(j["state"] in FOLD_ACTIVE for j in t["fold_jobs"])
        }
        self._stopped = sum(1 for t in trials if t["state"] == TrialState.STOPPED)
        self._failed = [t for t in trials if t["state"] == TrialState.FAILED]
        self._launched = self.ledger.fold_jobs_launched()
        best = self.ledger.best_trial()
        self._best: Any = best
        self._best_key: tuple | None = None
        if best is not None:
            inherited = self.ledger.inherited_trials()
            origin = next(((-1, i) for i, t in enumerate(inherited) if t is best), (0, best["number"]))
            self._best_key = rank_key(best, self._maximize) + origin

    @property
    def _maximize(self) -> bool:
        return self.config.objective.type == "Maximize"

    def _new_ledger_data(self) -> dict[str, Any]:
        return L.new_ledger_data(
            run_id=self.run_id,
            config=self.config.to_dict(),
            config_fingerprint=self.config.fingerprint(),
            manifest=self.manifest,
            kind=self.kind,
            extra={"entry_point_sha256": entry_point_sha256(self.config.entry_point), "code_sha256": self._code_sha256,
                   **self.ledger_extra},
        )

    def _driving(self, step: Any, *args: Any) -> Any:
        """Run one public step; if it raises, this driver is done: a later one in this process may take over."""
        try:
            return step(*args)
        except BaseException:
            lease_.abandon(self.ledger.owner)
            raise

    def _save(self, *, release: bool = False) -> None:
        """Save the ledger (conditionally; renews the lease); ``release`` gives the lease up in the same write."""
        self.ledger.data["elapsed_s"] = self._elapsed_before + (time.monotonic() - self._session_start)
        self.ledger.save(release=release and self.ledger.owner is not None)

    # -- public ----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) until the budget is spent; returns the run summary."""
        return self._driving(self._run)

    def _run(self) -> dict[str, Any]:
        if self.ledger.status == RunStatus.COMPLETED and self._done(recheck=True):
            log.info("run %s already completed; nothing to do", self.run_id)
            self.ledger.release_lease()
            return self.ledger.summary()
        inflight = self._start()
        while inflight:
            inflight = self._advance(self.backend.wait(inflight, timeout=self.poll_s))
            if self.ledger.lease_due():  # long jobs, nothing saved lately: renew before it expires
                self._save()
        return self._finish()

    # The steps below let a deferrable operator drive the run between trigger firings:
    # start() once per process, advance() whenever jobs ended, finish() when nothing is in flight.
    def start(self) -> list[str]:
        """Re-attach to the ledger's jobs, record those that ended, launch up to capacity."""
        return self._driving(self._start)

    def _start(self) -> list[str]:
        if self.ledger.status == RunStatus.FAILED:
            raise RunFailedError(f"run {self.run_id} failed earlier: {self.ledger.data['failure_reason']}")
        if self.ledger.status == RunStatus.COMPLETED and self._done(recheck=True):
            return []
        from cvtune.folds import check_files

        check_files(self.manifest, self.store)  # before anything is launched on them
        self.ledger.data["status"] = RunStatus.IN_PROGRESS  # a completed run may continue with a larger budget
        since = self.ledger.data.pop("deferred_since", None)
        if since is not None:  # left by release(): the wait is part of the run's wall time
            self.ledger.data["deferred_s"] = self.ledger.data.get("deferred_s", 0.0) + max(0.0, time.time() - since)
        self._restore()
        return self._advance([])

    def release(self) -> None:
        """Leave the run with its jobs in flight, for this or another process to :meth:`start` again.

        What a driver that stops watching calls (a deferring task, a sensor between pokes, a
        launch without waiting): the time until the next ``start()`` is recorded as waiting time
        (``deferred_s``), which the run summary's ``elapsed_s`` includes.
        """
        self.ledger.data["deferred_since"] = time.time()
        self._driving(lambda: self._save(release=True))

    def in_flight(self) -> list[str]:
        """Names of the run's fold jobs launched (or being launched) and not yet recorded as ended."""
        return self._inflight_names()

    def advance(self, ended: list[JobDescription]) -> list[str]:
        """Record ended jobs, ask new trials, launch; returns the job names still in flight."""
        return self._driving(self._advance, ended)

    def _advance(self, ended: list[JobDescription]) -> list[str]:
        # One ledger write for what ended and the trials asked, one before and one after the
        # launches (write-ahead): not one per job, which grows quadratically with a long run.
        for description in ended:
            self._record(description, save=False)
        self._check_failures()
        if self.ledger.status == RunStatus.COMPLETED:
            self._save()
            self._recorded(ended)
            return []
        asked = self._fill_trials()
        if not self._launch() and (ended or asked):
            self._save()
        self._recorded(ended)  # saved above, or by _launch's write-ahead
        if ended:  # after launching: the pools that just opened are taken first, described after
            self._pools.follow(save=False)
        inflight = self._inflight_names()
        self._pools.release(self._launch_done(), keep=0 if inflight else 1)
        if not inflight and any(t["state"] == TrialState.RUNNING for t in self._active.values()):
            raise RuntimeError(f"run {self.run_id}: running trials but no job in flight")  # a bug
        return inflight

    def _recorded(self, ended: list[JobDescription]) -> None:
        """Tell the backend these jobs' results are in the ledger (it may free their files)."""
        for description in ended:
            self.backend.recorded(description.name)

    def finish(self) -> dict[str, Any]:
        """Mark the run Completed (Failed without one usable trial) and give its lease up; returns its summary."""
        return self._driving(self._finish)

    def _finish(self) -> dict[str, Any]:
        self._pools.follow(save=False)  # fresh statuses: no release call for a pool already taken
        self._pools.release(True, keep=1)  # the one left is for the next step (final training, refinement)
        self._pools.follow()
        if self.ledger.summary()["best"] is None:
            # a run without one usable trial has no result: Failed, with what went wrong
            reasons = [t.get("failure_reason") for t in self.ledger.trials if t.get("failure_reason")]
            reason = "no trial completed" + (f"; last failure: {reasons[-1]}" if reasons else "")
            if self.ledger.status != RunStatus.FAILED:
                self.ledger.data["status"] = RunStatus.FAILED
                self.ledger.data["failure_reason"] = reason
                self._save(release=True)
            else:
                self.ledger.release_lease()
            raise RunFailedError(f"run {self.run_id} failed: {reason}; see {self.uri}")
        if self.ledger.status != RunStatus.COMPLETED:
            self.ledger.data["status"] = RunStatus.COMPLETED
            if self._stop_criterion() not in (*COMPLETION_CRITERIA, StopCriterion.EXHAUSTED):
                self.ledger.data["stop_reason"] = self._budget_reason()
            self.ledger.data["best"] = self.ledger.summary()["best"]
            self._save(release=True)
        else:
            self.ledger.release_lease()
        return self.ledger.summary()

    def stop(self, reason: str = "stopped by user") -> None:
        """Stop every in-flight fold job and mark the run Stopped (used by ``on_kill``)."""
        for name in self._inflight_names():
            try:
                self.backend.stop(name)
            except JobNotFoundError:
                pass
        for trial in list(self._active.values()):
            if trial["state"] == TrialState.RUNNING:
                self._end_trial(trial, TrialState.STOPPED, reason)
        self.ledger.data["status"] = RunStatus.STOPPED
        self.ledger.data["failure_reason"] = reason
        self.ledger.data["stop_reason"] = {"criterion": StopCriterion.STOPPED, "detail": reason}
        self._save(release=True)

    # -- scheduling ------------------------------------------------------------------------
    def _restore(self) -> None:
        """Rebuild in-memory state from the ledger and re-attach to jobs of an earlier attempt."""
        for trial in self.ledger.trials:
            value = trial["mean"] if trial["state"] == TrialState.COMPLETED else None
            self._unreplayed.append((trial["params"], value, trial["state"], L.running_means(trial["fold_scores"])))
            if trial["state"] in TRIAL_DONE:
                continue
            for job in trial["fold_jobs"]:
                self._jobs[job["job_name"]] = (trial, job)
                if job["state"] == FoldState.LAUNCHING:
                    try:
                        self._attach(job, self.backend.describe(job["job_name"]), trial)
                    except JobNotFoundError:
                        job["state"] = FoldState.PENDING  # recorded, never created: launch it later
                        self._launched -= 1
        for trial in self.ledger.trials:
            for job in trial["fold_jobs"]:
                if job["state"] == FoldState.IN_PROGRESS:
                    self._jobs[job["job_name"]] = (trial, job)
        self._save()
        self._pools.follow()
        ended = []
        for name in self._inflight_names():
            description = self.backend.describe(name)
            if description.done:
                ended.append(description)
        for description in ended:
            self._record(description)
        self._check_completion(recheck=True)  # criteria or budget may have changed since the last attempt

    def _attach(self, job: dict[str, Any], description: JobDescription, trial: dict[str, Any]) -> None:
        tags = description.tags or self.backend.owner_tags(job["job_name"])
        if tags.get(TAG_RUN) != self.run_id or tags.get(TAG_TRIAL) != str(trial["number"]) or tags.get(
            TAG_FOLD
        ) != str(job["fold"]):
            raise RunFailedError(
                f"job name {job['job_name']} is taken by a job that is not fold {job['fold']} of trial "
                f"{trial['number']} of run {self.run_id} (its tags: {tags}); refusing to reuse it — pick a new run id"
            )
        job["state"] = FoldState.IN_PROGRESS
        log.info("re-attached to %s", job["job_name"])

    def _inflight_names(self) -> list[str]:
        names = []
        for number, trial in list(self._active.items()):
            jobs = [job["job_name"] for job in trial["fold_jobs"] if job["state"] in FOLD_ACTIVE]
            if not jobs and trial["state"] != TrialState.RUNNING:
                del self._active[number]  # ended, and so are its jobs: no event concerns it any more
            names += jobs
        return names

    def _capacity(self, ahead: bool = False) -> int:
        caps = [c for c in (self.config.max_parallel_jobs, self.backend.capacity) if c]
        if not caps:
            return 10**9
        if not ahead:
            return min(caps)
        # launching: a backend that queues (the local pool) gets the next pending jobs ahead, so a
        # slot that frees up starts one at once instead of idling while this driver records the
        # result; not when the config's own limit binds (queued jobs would then run beyond it)
        backend_binds = self.backend.capacity is not None and self.backend.capacity <= min(caps)
        return min(caps) + (getattr(self.backend, "queue_ahead", 0) if backend_binds else 0)

    def _fill_trials(self) -> int:
        """Ask trials up to ``max_parallel_trials`` — and beyond, while job slots would stay free.

        The run keeps ``max_parallel_trials × folds`` jobs in flight (or the capacity, if lower).
        A trial whose last folds are running frees the slots of its finished ones; with early
        stopping, a trial waiting for its first wave's decision holds no job slot at all. Those
        slots go to the next trials' jobs instead of idling until the slowest fold of the trial
        ends (on SageMaker each idle slot is a warm pool billed while it waits). Returns how many
        were asked (saved by the caller).
        """
        asked = 0
        if self._stop_criterion() in COMPLETION_CRITERIA:
            return asked  # a completion criterion was met: in-flight trials finish, no new one starts
        running = sum(1 for t in self._active.values() if t["state"] == TrialState.RUNNING)
        target = self._target_jobs()
        # trials stopped by a kill don't use up the budget: a retry replaces them
        while self._budget_used() < self.config.max_trials and not self._exhausted:
            if running >= self.config.max_parallel_trials:
                idle = target - len(self._inflight_names()) - sum(1 for _ in self._pending_jobs())
                if idle <= 0 or running >= target:
                    return asked
            proposal = self.proposer.ask()
            if proposal is None:  # a grid or fixed list has nothing more to offer
                self._exhausted = True
                self.ledger.data["stop_reason"] = {
                    "criterion": StopCriterion.EXHAUSTED,
                    "detail": f"the {self.config.strategy} proposer has no more candidates after {self._budget_used()} trials",
                }
                return asked
            hyperparameters = self.config.space.hyperparameters(proposal.params)
            trial = self.ledger.new_trial(proposal.params, hyperparameters, source=proposal.source)
            self._active[trial["number"]] = trial
            self._handles[trial["number"]] = proposal
            for job in trial["fold_jobs"]:
                self._jobs[job["job_name"]] = (trial, job)
            running += 1
            asked += 1
        return asked

    def _target_jobs(self) -> int:
        """Jobs the run keeps in flight: ``max_parallel_trials × folds``, or the capacity if lower."""
        return min(self._capacity(), self.config.max_parallel_trials * self.ledger.data["folds"])

    def _launch_done(self) -> bool:
        """Whether the run has launched its last fold job (no trial left to ask, no fold left to launch)."""
        if self._budget_used() < self.config.max_trials and not self._exhausted:
            return False
        return not any(
            j["state"] in (FoldState.PENDING, FoldState.LAUNCHING)
            for t in self._active.values() if t["state"] == TrialState.RUNNING for j in t["fold_jobs"]
        )

    def _budget_used(self) -> int:
        return len(self.ledger.trials) - self._stopped

    def _stop_criterion(self) -> str | None:
        return (self.ledger.data.get("stop_reason") or {}).get("criterion")

    def _done(self, recheck: bool = False) -> bool:
        """Nothing more to ask: the budget is spent or a completion criterion holds."""
        if recheck:
            self._check_completion(recheck=True)
        return self._budget_used() >= self.config.max_trials or self._stop_criterion() in COMPLETION_CRITERIA

    def _budget_reason(self) -> dict[str, Any]:
        return {"criterion": StopCriterion.MAX_TRIALS, "detail": f"the budget of {self.config.max_trials} trials is spent"}

    def _check_completion(self, recheck: bool = False) -> None:
        """Record the first run-level completion criterion met (:mod:`cvtune.completion`).

        Within one driver a met criterion stays met. ``recheck`` (each start) forgets the last
        attempt's reason and decides again from the ledger, so a resumed run with other criteria
        or a larger budget continues, and a killed run replaces its stopped trials.
        """
        from cvtune import completion as C

        if recheck and self._stop_criterion() in (*COMPLETION_CRITERIA, StopCriterion.STOPPED):
            self.ledger.data.pop("stop_reason", None)
        if self._stop_criterion() in COMPLETION_CRITERIA:
            return
        criteria = self.config.completion
        if not criteria.active:
            return
        maximize = self._maximize
        best = self._best
        inherited = [t["mean"] for t in self.ledger.inherited_trials() if t.get("mean") is not None]
        baseline = (max(inherited) if maximize else min(inherited)) if inherited else None
        reason = C.check_target(criteria, best, maximize)
        criterion = StopCriterion.TARGET_VALUE
        if reason is None:
            reason, criterion = C.check_not_improving(criteria, self.ledger.trials, maximize, baseline), StopCriterion.MAX_TRIALS_NOT_IMPROVING
        if reason is None and criteria.convergence.rule != "off":
            completed = len(self.ledger.completed_trials())
            if completed != self._convergence_checked_at:  # the GP only changes when a trial completes
                self._convergence_checked_at = completed
                self._convergence_reason, stat = C.check_convergence(
                    criteria.convergence, self.config.space, self.ledger.trials, best, maximize, self.manifest,
                    seed=self.config.seed,
                )
                if stat is not None:
                    self.ledger.data["convergence"] = stat
            reason, criterion = self._convergence_reason, StopCriterion.CONVERGENCE
        if reason is not None:
            log.info("run %s: no new trials — %s", self.run_id, reason)
            self.ledger.data["stop_reason"] = {"criterion": criterion, "detail": reason}

    def _pending_jobs(self):
        for trial in self._active.values():
            if trial["state"] != TrialState.RUNNING:
                continue
            limit = self.stopper.launch_limit(trial)  # folds wait for the early-stopping decision
            for job in trial["fold_jobs"]:
                if job["state"] == FoldState.PENDING and job["fold"] < limit:
                    yield trial, job

    def _launch(self) -> int:
        """Launch pending fold jobs up to the free slots; returns how many."""
        ahead = self._capacity(ahead=True) - self._capacity()  # queued in the backend, see _capacity
        free = self._target_jobs() + ahead - len(self._inflight_names())
        batch = list(self._pending_jobs())[: max(0, free)]
        if not batch:
            return 0
        for _, job in batch:
            job["state"] = FoldState.LAUNCHING
        self._launched += len(batch)
        self._save()  # write-ahead: a crash from here on is resolved by describe() on resume
        for trial, job in batch:
            spec = self._spec(trial, job)
            try:
                self.backend.submit(spec)
            except JobExistsError:
                self._attach(job, self.backend.describe(spec.name), trial)
            job["state"] = FoldState.IN_PROGRESS
        # not saved here: the next save (the next write-ahead, a release, the run's end) carries it;
        # until then the ledger says Launching, which a resume resolves by describing the job
        self.ledger.data["last_launch_at"] = time.time()
        return len(batch)

    def _spec(self, trial: dict[str, Any], job: dict[str, Any]) -> JobSpec:
        fold = self.manifest["folds"][job["fold"]]
        return JobSpec(
            name=job["job_name"],
            entry_point=self.config.entry_point,
            hyperparameters=trial["hyperparameters"],
            channels={"train": fold["train_uri"], "validation": fold["validation_uri"]},
            metric_definitions=self.config.metric_definitions,
            max_runtime_s=self.config.max_runtime_s,
            tags={TAG_RUN: self.run_id, TAG_TRIAL: str(trial["number"]), TAG_FOLD: str(job["fold"])},
            environment=dict(self.config.environment),
        )

    # -- results ---------------------------------------------------------------------------
    def _record(self, d: JobDescription, save: bool = True) -> None:
        if d.name not in self._jobs:
            return
        trial, job = self._jobs[d.name]
        if job["state"] in FOLD_DONE:
            return
        job.update(
            state=d.status,
            metrics=d.final_metrics,
            failure_reason=d.failure_reason,
            start_time=d.start_time,
            end_time=d.end_time,
            billable_seconds=d.billable_seconds,
            warm_pool_status=d.warm_pool_status,
        )
        self._pools.ended(job, d)
        metric = self.config.objective.metric
        if d.status == JobStatus.COMPLETED:
            value = d.final_metrics.get(metric)
            if value is None:
                job["state"] = FoldState.FAILED
                job["failure_reason"] = (
                    f"the objective metric {metric!r} was not found in the job log ({d.log_uri}); "
                    f"check its Regex in metric_definitions"
                )
            elif not math.isfinite(value):
                job["state"] = FoldState.FAILED
                job["failure_reason"] = (
                    f"the objective metric {metric!r} is {value} (not a finite number) in the job log "
                    f"({d.log_uri}); the training script diverged or scored an empty/degenerate fold"
                )
            else:
                job["objective"] = value
                trial["fold_scores"][job["fold"]] = value
        if trial["state"] == TrialState.RUNNING:
            if job["state"] == FoldState.FAILED:
                self._fail_trial(trial, f"fold {job['fold']} ({d.name}) failed: {job['failure_reason']}")
            elif job["state"] == FoldState.STOPPED:
                self._fail_trial(trial, f"fold {job['fold']} ({d.name}) was stopped", state=TrialState.STOPPED)
            elif all(j["state"] == FoldState.COMPLETED for j in trial["fold_jobs"]):
                mean, std = L.score_stats(trial["fold_scores"])
                trial["mean"], trial["std"] = mean, std
                self._end_trial(trial, TrialState.COMPLETED)
            elif job["state"] == FoldState.COMPLETED:
                reason = self.stopper.decide(trial, self.ledger.trials, self._best, self._maximize)
                if reason:
                    self._fail_trial(trial, reason, state=TrialState.PRUNED)
        if save:
            self._save()
            self.backend.recorded(d.name)  # its result is in the ledger now

    def _fail_trial(self, trial: dict[str, Any], reason: str, state: str = TrialState.FAILED) -> None:
        for job in trial["fold_jobs"]:
            if job["state"] == FoldState.PENDING:
                job["state"] = FoldState.CANCELLED
            elif job["state"] in FOLD_ACTIVE:
                try:
                    self.backend.stop(job["job_name"])
                except JobNotFoundError:
                    job["state"] = FoldState.CANCELLED
                    self._launched -= 1
        self._end_trial(trial, state, reason)

    def _end_trial(self, trial: dict[str, Any], state: str, reason: str | None = None) -> None:
        trial["state"] = state
        trial["ended"] = time.time()
        trial["failure_reason"] = reason
        if state == TrialState.STOPPED:
            self._stopped += 1
        elif state == TrialState.FAILED:
            self._failed.append(trial)
        elif rankable(trial):
            # cvtune.ranking's order: its key, then inherited trials before own ones, then by number
            key = rank_key(trial, self._maximize) + (0, trial["number"])
            if self._best_key is None or key < self._best_key:
                self._best, self._best_key = trial, key
        if state == TrialState.PRUNED:
            trial["partial_mean"] = L.running_means(trial["fold_scores"])[-1]
        proposal = self._handles.pop(trial["number"], None)
        # pruned trials still inform the sampler, through their running means per fold
        self.proposer.tell(proposal or trial["params"], trial["mean"], state, L.running_means(trial["fold_scores"]))
        self._log_progress(trial)
        if state != TrialState.STOPPED:
            self._check_completion()

    def _log_progress(self, trial: dict[str, Any]) -> None:
        done = len(self.ledger.trials) - sum(1 for t in self._active.values() if t["state"] == TrialState.RUNNING)
        total = self.config.max_trials
        elapsed = self._elapsed_before + (time.monotonic() - self._session_start)
        eta = elapsed / done * (total - done) if done else 0.0
        best = self._best
        if best is None:
            best_s = "no best yet"
        elif best.get("run_id", self.run_id) != self.run_id:  # inherited from a warm-start parent
            best_s = f"best {best['mean']:.4f}: trial {best['number']} of parent run {best['run_id']}"
        else:
            best_s = f"best {best['mean']:.4f}: trial {best['number']}"
        metric = self.config.objective.metric
        if trial["state"] == TrialState.COMPLETED:
            what = f"complete: {metric} {trial['mean']:.4f} ± {trial['std']:.4f}"
        elif trial["state"] == TrialState.PRUNED:
            what = f"pruned: {trial['failure_reason']}"
        else:
            what = f"{trial['state'].lower()}: {trial['failure_reason']}"
        # the run is named: a warm-started run's counts and its best's trial may come from different runs
        log.info(
            "trial %d/%d of run %s %s (%s) · %d fold jobs so far · %.1f s elapsed · ETA %.0f s",
            trial["number"] + 1,
            total,
            self.run_id,
            what,
            best_s,
            self._launched,
            elapsed,
            eta,
        )

    def _check_failures(self) -> None:
        failed = self._failed
        if len(failed) < self.config.max_failed_trials:
            return
        last = max(failed, key=lambda t: t["number"])["failure_reason"]
        reason = (
            f"{len(failed)} trials failed (max_failed_trials={self.config.max_failed_trials}); "
            f"last failure: {last}"
        )
        self.stop(reason)
        self.ledger.data["status"] = RunStatus.FAILED
        self.ledger.save()
        raise RunFailedError(f"run {self.run_id} stopped: {reason}")


def cross_validate(
    config: TuningConfig,
    manifest: dict[str, Any],
    backend: Backend,
    hyperparameters: dict[str, Any],
    *,
    artifact_root: str,
    run_id: str,
    poll_s: float = 2.0,
    store: ArtifactStore | None = None,
) -> dict[str, Any]:
    """Evaluate one hyperparameter set on every fold; returns fold scores, mean and std."""
    config = config.with_overrides(max_trials=1, max_parallel_trials=1, max_failed_trials=1)
    tuner = CVTuner(
        config,
        manifest,
        backend,
        run_id=run_id,
        artifact_root=artifact_root,
        proposer=FixedProposer([hyperparameters], source="cv"),
        kind="cv",
        poll_s=poll_s,
        store=store,
    )
    summary = tuner.run()
    best = summary["best"]
    return {
        "run_id": run_id,
        "ledger": tuner.uri,
        "hyperparameters": best["hyperparameters"],
        "fold_scores": best["fold_scores"],
        "mean": best["mean"],
        "std": best["std"],
    }
