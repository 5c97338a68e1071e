"""The ``cvtune`` command line: split, tune, cv, results. JSON on stdout, logs on stderr."""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
import time
from typing import Any

from cvtune.errors import ConfigError, CvtuneError

DEFAULT_OUT = "cvtune-artifacts"


def _print(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _backend_config(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """(backend kind, settings) from ``--backend`` and ``--backend-config``."""
    config: dict[str, Any] = {}
    if getattr(args, "backend_config", None):
        try:
            with open(args.backend_config, encoding="utf-8") as f:
                config = json.load(f)
        except (OSError, ValueError) as exc:
            raise CvtuneError(f"--backend-config: cannot read {args.backend_config} as JSON ({exc})") from None
        if not isinstance(config, dict):
            raise CvtuneError(f"--backend-config: {args.backend_config} must hold a JSON object of settings")
    kind = args.backend or config.pop("backend", "local")
    config.pop("backend", None)
    return kind, config


def _platform(args: argparse.Namespace):
    """The platform of ``--backend``/``--backend-config`` (the connection extra's keys) and ``--out``."""
    from cvtune.platform import platform_for

    kind, config = _backend_config(args)
    # outside Airflow there is no connection to read: boto3's own chain, unless the file names one
    config.setdefault("aws_conn_id", None)
    config["artifact_root"] = args.out or config.get("artifact_root") or DEFAULT_OUT
    if getattr(args, "workers", None):
        config["workers"] = args.workers
    return platform_for({**config, "backend": kind}, source="--backend-config")


def cmd_split(args: argparse.Namespace) -> int:
    from cvtune.folds import manifest_summary, split_dataset

    # the store of --backend/--backend-config, as `cvtune tune` has it: an s3:// split is read and
    # written with the settings' aws_conn_id (else boto3's own chain), not a process-wide client
    store = _platform(args).store
    manifest = split_dataset(
        args.data,
        args.out,
        target=args.target,
        folds=args.folds,
        strategy=args.strategy,
        group_column=args.group_column,
        time_column=args.time_column,
        holdout=args.holdout,
        seed=args.seed,
        task=args.task,
        file_format=args.file_format,
        store=store,
    )
    _print({"manifest": manifest["manifest_uri"], **manifest_summary(manifest)})
    return 0


def _load(args: argparse.Namespace):
    from cvtune.config import load_config
    from cvtune.folds import load_manifest

    overrides = {
        k: getattr(args, k, None)
        for k in ("strategy", "max_trials", "max_parallel_trials", "max_parallel_jobs", "seed",
                  "target_value", "max_trials_not_improving", "convergence")
    }
    return load_config(args.config, **overrides), load_manifest(args.manifest, _platform(args).store)


def cmd_tune(args: argparse.Namespace) -> int:
    from cvtune.tuner import CVTuner

    platform = _platform(args)
    config, manifest = _load(args)
    run_id = args.run_id or f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    warm = None
    if args.warm_start_from:
        from cvtune.warmstart import WarmStart, load_parents

        warm = WarmStart(
            args.warm_start_type,
            load_parents(args.warm_start_from, args.transitive, "--warm-start-from", store=platform.store),
            uris=args.warm_start_from,
        )
    if args.dry_run:
        return _dry_run(args, platform, config, manifest, run_id, warm)
    with platform.make_backend() as backend:
        tuner = CVTuner(
            config, manifest, backend, run_id=run_id, artifact_root=platform.artifact_root, poll_s=args.poll,
            warm_start=warm, lease_label="cvtune tune", store=platform.store,
        )
        _print(tuner.run())
    return 0


def _dry_run(
    args: argparse.Namespace, platform: Any, config: Any, manifest: dict[str, Any], run_id: str, warm: Any
) -> int:
    """Print the requests the run would send (validated against the API model); send nothing."""
    assumed = {k: getattr(args, f"assume_{k}") for k in ("start_s", "job_s", "warm_start_s", "poll_s")}
    plan = platform.plan(
        config, manifest, run_id=run_id, warm_start=warm, field="--dry-run",
        assumptions={k: v for k, v in assumed.items() if v is not None},
    )
    _print(plan)
    cost = plan["plan"]["cost"]
    money = f", cost {cost['cost']}" if "cost" in cost else ""
    print(
        f"plan: {cost['fold_jobs']} fold jobs, {cost['concurrent_jobs']} at a time: wall {cost['wall_h']} h; "
        f"{cost['instance_hours']} instance-hours (jobs {cost['job_instance_hours']}, retained "
        f"{cost['retained_instance_hours']}, idle tail {cost['idle_tail_instance_hours']}){money}; peak "
        f"{cost['peak_instances']} instances; quotas: "
        + ", ".join(f"{k} >= {v}" for k, v in cost["quotas"].items()),
        file=sys.stderr,
    )
    return 0


def cmd_cv(args: argparse.Namespace) -> int:
    from cvtune.tuner import cross_validate

    config, manifest = _load(args)
    try:
        hyperparameters = json.loads(args.hyperparameters)
    except json.JSONDecodeError as exc:
        raise CvtuneError(f"--hyperparameters: not valid JSON ({exc}); pass e.g. '{{\"eta\": 0.1}}'") from None
    if not isinstance(hyperparameters, dict):
        raise CvtuneError("--hyperparameters: expected a JSON object of name: value")
    run_id = args.run_id or f"cv-{time.strftime('%Y%m%d-%H%M%S')}"
    platform = _platform(args)
    with platform.make_backend() as backend:
        _print(
            cross_validate(
                config, manifest, backend, hyperparameters, artifact_root=platform.artifact_root, run_id=run_id,
                poll_s=args.poll, store=platform.store,
            )
        )
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from cvtune.ledger import RunLedger

    ledger = RunLedger.load(args.ledger)
    rows = ledger.rows()
    bill = ledger.summary()
    cost = f", cost {bill['cost']}" if "cost" in bill else ""
    print(
        f"run {ledger.run_id}: billed job time {bill['billable_seconds']} s + retained warm-pool time "
        f"{bill['retained_seconds']} s, x {bill['instance_count']} instance(s) = {bill['instance_seconds']} "
        f"instance-seconds ({bill['instance_hours']} instance-hours){cost}",
        file=sys.stderr,
    )
    if args.format == "json":
        _print(rows)
        return 0
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    sys.stdout.write(buf.getvalue())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from cvtune.platform import PLATFORMS

    parser = argparse.ArgumentParser(prog="cvtune", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("split", help="split a dataset into k folds and write a fold manifest")
    p.add_argument("data", help="CSV or Parquet file (or a directory of them), local path or URI")
    p.add_argument("--target", required=True, help="target column")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--strategy", choices=["kfold", "stratified", "group", "timeseries"])
    p.add_argument("--group-column")
    p.add_argument("--time-column", help="strategy timeseries: order folds by this column (numbers or dates)")
    p.add_argument("--holdout", type=float, default=0.0, help="fraction of rows held out before folding")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", choices=["classification", "regression"])
    p.add_argument("--file-format", choices=["csv", "parquet"],
                   help="format of the fold files (default: the input's); parquet splits and reads faster")
    p.add_argument("--out", required=True, help="artifact directory or URI for folds and manifest.json")
    p.add_argument("--backend", choices=sorted(PLATFORMS), help="whose settings give the store (default: local)")
    p.add_argument("--backend-config",
                   help="JSON file with the backend settings (same keys as the connection extra); its aws_conn_id "
                        "and region_name give the credentials of s3:// data and --out")
    p.set_defaults(func=cmd_split)

    for name, func, helptext in (
        ("tune", cmd_tune, "run (or resume) a cross-validated tuning run"),
        ("cv", cmd_cv, "cross-validate one hyperparameter set on every fold"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--manifest", required=True, help="manifest.json URI (or its directory)")
        p.add_argument("--config", required=True, help="tuning config, YAML or JSON")
        p.add_argument("--run-id", help="resume this run if it exists (default: a new timestamped id)")
        p.add_argument("--out", help=f"artifact root (default: the backend config's artifact_root, else ./{DEFAULT_OUT})")
        p.add_argument("--backend", choices=sorted(PLATFORMS))
        p.add_argument("--backend-config", help="JSON file with the backend settings (same keys as the connection extra)")
        p.add_argument("--workers", type=int, help="local backend: warm worker processes")
        p.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
        if name == "tune":
            p.add_argument("--strategy", choices=["Bayesian", "Random", "Grid", "Hyperband"])
            p.add_argument("--max-trials", type=int)
            p.add_argument("--max-parallel-trials", type=int)
            p.add_argument("--max-parallel-jobs", type=int)
            p.add_argument("--seed", type=int)
            p.add_argument("--target-value", type=float,
                           help="stop asking trials once the best mean CV score reaches this value")
            p.add_argument("--max-trials-not-improving", type=int, metavar="N",
                           help="stop after N trials in a row without a 1%% improvement of the best (AMT's "
                                "BestObjectiveNotImproving; N >= 3)")
            p.add_argument("--convergence", choices=["off", "noise"],
                           help="noise: stop once the improvement still plausible is below the best trial's CV "
                                "noise (see docs/completion.md)")
            p.add_argument("--warm-start-from", action="append", metavar="LEDGER",
                           help="parent run ledger (repeat for several parents)")
            p.add_argument("--warm-start-type", default="IDENTICAL_DATA_AND_ALGORITHM",
                           choices=["IDENTICAL_DATA_AND_ALGORITHM", "TRANSFER_LEARNING"])
            p.add_argument("--transitive", action="store_true", help="also take the parents' own parents")
            p.add_argument("--dry-run", action="store_true",
                           help="sagemaker: print the first trial's CreateTrainingJob requests and the run's "
                                "plan as JSON, validated against the API model; nothing is sent or uploaded")
            for flag, default in (("start", "180: a cold instance start"), ("job", "max_runtime_s of the config"),
                                  ("warm-start", "5: a start on a warm pool"), ("poll", "10")):
                p.add_argument(f"--assume-{flag}-s", type=float, metavar="SECONDS",
                               help=f"--dry-run plan: assumed seconds of a {flag.replace('-', ' ')} (default {default})")
        else:
            p.add_argument("--hyperparameters", required=True, help="JSON object, e.g. '{\"eta\": 0.1}'")
        p.set_defaults(func=func)

    p = sub.add_parser("results", help="one row per trial of a run ledger")
    p.add_argument("ledger", help="ledger.json URI")
    p.add_argument("--format", choices=["csv", "json"], default="csv")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("sagemaker-emulator", help="run the SageMaker emulator (training, warm pools, transform) "
                       "on 127.0.0.1 until stopped; needs the [emulator] extra")
    p.add_argument("--port", type=int, default=0, help="port to listen on (default: a free one, printed)")
    p.add_argument("--s3-endpoint", help="moto server to use for S3 and the model registry (default: start one)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="real seconds per emulated second of provisioning, downloads, uploads and keep-alive")
    p.add_argument("--instance-quota", action="append", default=[], metavar="TYPE=N",
                   help="training instances allowed per instance type (default 20)")
    p.add_argument("--warm-pool-quota", action="append", default=[], metavar="TYPE=N",
                   help="warm-pool instances allowed per instance type (AWS's default is 0: no pool is kept)")
    p.add_argument("--fault", action="append", default=[], metavar="OP=CODE:RATE",
                   help="inject errors, e.g. CreateTrainingJob=ThrottlingException:0.2 or job=InternalServerError:0.1")
    p.add_argument("--seed", type=int, help="seed of the fault draws")
    p.add_argument("--ready-file", help="write the endpoints as JSON to this file once listening")
    p.set_defaults(func=cmd_sagemaker_emulator)
    return parser


def cmd_sagemaker_emulator(args: argparse.Namespace) -> int:
    try:
        from cvtune.emulator.faults import Faults
        from cvtune.emulator.quotas import Quotas
        from cvtune.emulator.server import EmulatorConfig, serve
    except ImportError as exc:  # moto's server is the extra
        raise ConfigError("sagemaker-emulator", f"needs the emulator extra ({exc})",
                          "pip install 'airflow-provider-cvtune[emulator]'") from None
    try:
        quotas = Quotas(training_instances=Quotas.parse(args.instance_quota, "instance-quota"),
                        warm_pool=Quotas.parse(args.warm_pool_quota, "warm-pool-quota"))
        faults = Faults.parse(args.fault, seed=args.seed)
    except ValueError as exc:
        raise ConfigError("sagemaker-emulator", str(exc)) from None
    if not args.time_scale > 0:
        raise ConfigError("--time-scale", f"must be > 0, got {args.time_scale}", "e.g. 0.01 for a 100x faster clock")
    config = EmulatorConfig(port=args.port, s3_endpoint=args.s3_endpoint, region=args.region,
                            time_scale=args.time_scale, quotas=quotas, faults=faults)
    serve(config, ready_file=args.ready_file)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except CvtuneError as exc:
        logging.getLogger("cvtune").error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
