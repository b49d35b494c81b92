"""Retrain flip benchmark: focal distillation against plain fine-tuning, through the control room's own services.

    .venv/bin/python bench/retrain_flips.py [--seeds 3] [--streams flights movielens] [--db postgres|sqlite]
        [--database-url postgresql://root@127.0.0.1:5432/bench_retrain_flips] [--stride N]
        [--params '{"epochs": 10}'] [--device auto] [--json results.json] [--keep]

Target (the "Slow loop" issue): on the demo stream and the MovieLens stream, a retrained candidate with
focal distillation has a lower NFR than one without, at equal or better AUC (an AUC at most 0.002
below counts as equal), as reported in the FlipReports.

``bench/flips.py`` answers the question for the engine (``adaptive.ml``) on fixed splits. This one
asks the control room: the events are stored, labeled and read back by the services, the candidates
are trained by the retrain job's code (``retraining.run_retrain``: the live version's preprocessing,
the round's holdout, recent events and replay sample, its defaults) and compared by the evaluation
job's code (``evaluation.run_evaluation``), and every figure printed is read from a FlipReport row.

What it does (see bench/README.md):

1. creates the database (PostgreSQL: drops and re-creates ``--database-url``; SQLite: a file in a
   temporary folder) and migrates it;
2. per stream, a deployment with the stream's schema and retrain policy ``manual`` (no candidate is
   promoted, so every retrain starts from the same live version), and v1 trained on the first
   period with the demo's recipe (``adaptive.demo.train_first_version``: MLP [64, 32]): flights
   January-February 2013 as in ``bin/up``'s demo, MovieLens 1995-1999 as in ``bench/stream_replay.py``;
3. the rest of the stream goes through ``ingest.predict`` (v1 serves it: the stored base scores are
   v1's) and ``ingest.record_feedback`` in batches of ``MAX_BATCH_ROWS``;
4. per seed, two retrain jobs with the same parameters and seed but ``distill`` true and false, each
   requested, claimed and run in this process (no worker needed), then an evaluation job of each
   candidate against v1 on its round's holdout (the newest labeled events; the same set for both,
   checked), which writes the FlipReport;
5. prints, per stream, each seed and the mean ± sd of accuracy, AUC, NFR with its Wilson 95%
   interval, relative NFR and PFR of both arms, and PASS/MISS for the target on the means (and how
   many seeds meet it on their own); drops the database (unless ``--keep``).

``--stride N`` keeps every Nth event of each stream (the time span, and so the drift, is kept): a
smoke run. The exit status is 0 whether the target is met or not (a benchmark, not a test),
non-zero when anything fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

import numpy as np
import psycopg

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project (and bench.ingest) importable
    sys.path.insert(0, str(ROOT))

from bench.ingest import BenchError, drop_database, recreate_database, scratch_database_name  # noqa: E402

DEFAULT_DATABASE_URL: Final = "postgresql://root@127.0.0.1:5432/bench_retrain_flips"
# Where each stream's first period (v1's training data) ends: the demo's two months of flights, and
# bench/stream_replay.py's MovieLens years.
INITIAL_UNTIL: Final = {"flights": datetime(2013, 3, 1, tzinfo=UTC), "movielens": datetime(2000, 1, 1, tzinfo=UTC)}
# The target: distillation's NFR below plain fine-tuning's, with an AUC no more than this below it.
AUC_TOLERANCE: Final = 0.002
ARMS: Final = {"plain": False, "distill": True}


# --- set-up -----------------------------------------------------------------------------------------


def bench_env(workdir: Path, database_url: str, device: str) -> dict[str, str]:
    """The environment of this process's Django: the database, artifacts and a broker in ``workdir``.

    Nothing here sends a task (the jobs run in this process), but the file-system broker keeps any
    stray message away from a worker serving another database.
    """
    return {
        "CELERY_BROKER_URL": "filesystem://",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "HTTPS": "0",
        "DJANGO_DEBUG": "0",
        "ARTIFACT_ROOT": str(workdir / "artifacts"),
        "VAR_DIR": str(workdir / "var"),
        "ADAPTIVE_DEVICE": device,
        "LOG_LEVEL": "WARNING",
    }


def prepare_database(db: str, url: str, env: dict[str, str]) -> None:
    """Create (PostgreSQL: drop and re-create) and migrate; then set up Django in this process."""
    if db == "postgres":
        recreate_database(url)
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)


def server_description(db: str, url: str) -> str:
    if db == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


# --- one stream: deployment, v1, events -------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A stream's deployment with v1 live and the later period stored and labeled."""

    name: str
    deployment_id: int
    n_initial: int
    n_events: int
    initial_span: str
    events_span: str
    v1_val_auc: float
    seconds_train: float
    seconds_ingest: float


def _day(value: np.datetime64) -> str:
    return str(value)[:10]


def prepare_stream(name: str, stride: int, batch_rows: int) -> Prepared:
    """Load the stream, train and upload v1 on its first period, store and label the rest."""
    from django.conf import settings

    from adaptive.demo import train_first_version
    from adaptive.ml.streams import load_stream
    from adaptive.models import Deployment
    from adaptive.services import ingest, registry

    stream = load_stream(name)  # type: ignore[arg-type]
    if stride > 1:
        stream = stream.take(np.arange(0, len(stream), stride))
    until = np.datetime64(INITIAL_UNTIL[name].replace(tzinfo=None), "s")
    n_initial = int(np.searchsorted(stream.times, until, side="left"))
    if not 0 < n_initial < len(stream):
        raise BenchError(f"{name}: the first period (before {until}) holds {n_initial} of {len(stream)} events")

    deployment, _ = registry.create_deployment(
        fields={
            "slug": f"bench-{name}",
            "name": f"Bench: retrain flips on {name}",
            "task": "binary",
            "classes": ["0", "1"],
            "feature_schema": stream.schema,
            # Manual: a passing candidate is not promoted, so the next retrain starts from v1 again.
            "retrain_policy": Deployment.RetrainPolicy.MANUAL,
        },
        actor=None,
    )
    started = time.perf_counter()
    spec, weights = train_first_version(
        stream, n_initial, notes=f"bench/retrain_flips.py: v1 on {name} before {until}", log=lambda line: None
    )
    registry.upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    seconds_train = time.perf_counter() - started

    deployment = Deployment.objects.select_related("live_version").get(pk=deployment.pk)
    started = time.perf_counter()
    batch_rows = min(batch_rows, settings.MAX_BATCH_ROWS)
    for start in range(n_initial, len(stream), batch_rows):
        index = range(start, min(start + batch_rows, len(stream)))
        rows = [{"id": stream.ids[i], "ts": f"{stream.times[i]}Z", "features": stream.rows[i]} for i in index]
        ingest.predict(deployment=deployment, payload={"rows": rows})
        labels = [{"id": stream.ids[i], "label": int(stream.labels[i])} for i in index]
        result = ingest.record_feedback(deployment=deployment, payload={"labels": labels})
        if result.accepted != len(labels):
            raise BenchError(f"{name}: {result.accepted} of {len(labels)} labels accepted at event {start}")
    seconds_ingest = time.perf_counter() - started
    return Prepared(
        name=name,
        deployment_id=deployment.pk,
        n_initial=n_initial,
        n_events=len(stream) - n_initial,
        initial_span=f"{_day(stream.times[0])}..{_day(stream.times[n_initial - 1])}",
        events_span=f"{_day(stream.times[n_initial])}..{_day(stream.times[-1])}",
        v1_val_auc=float(spec["metrics"]["val_auc"]),
        seconds_train=seconds_train,
        seconds_ingest=seconds_ingest,
    )


# --- the two retrains of one seed -------------------------------------------------------------------


def retrain_and_evaluate(deployment_id: int, params: dict[str, Any]) -> dict[str, Any]:
    """One retrain job and its evaluation, as the gpu worker runs them; the FlipReport's figures."""
    from django.conf import settings

    from adaptive.ml.training import resolve_device
    from adaptive.models import Deployment, FlipReport, Job
    from adaptive.services import evaluation, jobs, retraining

    device = str(resolve_device(settings.ADAPTIVE_DEVICE))
    deployment = Deployment.objects.select_related("live_version").get(pk=deployment_id)
    assert deployment.live_version is not None
    live_number = deployment.live_version.number
    started = time.perf_counter()
    requested = retraining.request_retrain(deployment=deployment, actor=None, reason="bench", params=params)
    job = jobs.claim(requested.pk, Job.Kind.RETRAIN, device=device)
    if job is None:
        raise BenchError(f"retrain job {requested.pk} could not be claimed")
    try:
        candidate = retraining.run_retrain(job)
    except Exception as exc:
        jobs.fail(job, f"{type(exc).__name__}: {exc}")
        raise
    jobs.succeed(job, message=f"candidate v{candidate.number}")
    seconds_retrain = time.perf_counter() - started

    started = time.perf_counter()
    requested = evaluation.request_evaluation(
        deployment=deployment, old_number=live_number, new_number=candidate.number, actor=None, retrain_job=job
    )
    evaluation_job = jobs.claim(requested.pk, Job.Kind.EVALUATION, device=device)
    if evaluation_job is None:
        raise BenchError(f"evaluation job {requested.pk} could not be claimed")
    report: FlipReport = evaluation.run_evaluation(evaluation_job)
    jobs.succeed(evaluation_job, metrics=evaluation.outcome(report))
    seconds_evaluation = time.perf_counter() - started

    report = FlipReport.objects.get(pk=report.pk)  # the figures as stored
    holdout = candidate.metrics["holdout"]
    return {
        "report": report.pk,
        "old": live_number,
        "new": candidate.number,
        "n": report.n,
        "old_accuracy": report.old_accuracy,
        "new_accuracy": report.new_accuracy,
        "old_auc": report.old_auc,
        "new_auc": report.new_auc,
        "nfr": report.nfr,
        "nfr_low": report.nfr_low,
        "nfr_high": report.nfr_high,
        "relative_nfr": report.relative_nfr,
        "pfr": report.pfr,
        "gate_passed": report.gate_passed,
        "holdout": {key: holdout[key] for key in ("from_id", "to_id", "from_time", "to_time", "n")},
        "epochs_run": candidate.metrics.get("epochs_run"),
        "n_train": candidate.metrics.get("n_train"),
        "n_replay": candidate.metrics.get("n_replay"),
        "device": candidate.metrics.get("device"),
        "seconds_retrain": seconds_retrain,
        "seconds_evaluation": seconds_evaluation,
    }


def run_seed(deployment_id: int, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """Both arms with the same seed and data; checks that both reports scored the same events."""
    result: dict[str, Any] = {"seed": seed}
    for arm, distill in ARMS.items():
        result[arm] = retrain_and_evaluate(deployment_id, {**params, "distill": distill, "seed": seed})
    if result["plain"]["holdout"] != result["distill"]["holdout"]:
        raise BenchError(
            f"seed {seed}: the two rounds held out different events: {result['plain']['holdout']} vs "
            f"{result['distill']['holdout']}"
        )
    result["nfr_delta"] = result["distill"]["nfr"] - result["plain"]["nfr"]
    result["auc_delta"] = _delta(result["distill"]["new_auc"], result["plain"]["new_auc"])
    result["meets_target"] = meets_target(result["nfr_delta"], result["auc_delta"])
    return result


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def meets_target(nfr_delta: float, auc_delta: float | None) -> bool:
    """Distillation's NFR is lower, and its AUC at most AUC_TOLERANCE below plain fine-tuning's."""
    return nfr_delta < 0 and auc_delta is not None and auc_delta >= -AUC_TOLERANCE


# --- reporting --------------------------------------------------------------------------------------


def mean_sd(values: Sequence[float | None], digits: int = 4) -> str:
    """``mean ± sd`` (sample sd; ``± -`` for one value), ``-`` when a value is undefined."""
    if not values or any(v is None for v in values):
        return "-"
    numbers = [float(v) for v in values if v is not None]
    sd = f"{statistics.stdev(numbers):.{digits}f}" if len(numbers) > 1 else "-"
    return f"{statistics.fmean(numbers):.{digits}f} ± {sd}"


def _f(value: float | None, digits: int = 4, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def stream_lines(prepared: Prepared, runs: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """The printed table of one stream and its verdict."""
    first = runs[0]["plain"]
    holdout = first["holdout"]
    lines = [
        f"== {prepared.name}: v1 trained on {prepared.n_initial:,} events ({prepared.initial_span}, validation AUC "
        f"{prepared.v1_val_auc:.4f}, {prepared.seconds_train:.0f} s); {prepared.n_events:,} later events "
        f"({prepared.events_span}) predicted and labeled through the services in {prepared.seconds_ingest:.1f} s "
        f"({prepared.n_events / max(prepared.seconds_ingest, 1e-9):,.0f} rows/s)",
        f"holdout (both arms, every seed): {holdout['n']:,} newest labeled events "
        f"({holdout['from_time'][:10]}..{holdout['to_time'][:10]}); v1 on it: accuracy {first['old_accuracy']:.4f}, "
        f"AUC {_f(first['old_auc'])}; candidates trained on {first['n_train']:,} rows ({first['n_replay']:,} "
        f"replayed) on {first['device']}",
    ]
    header = (
        f"{'seed':<5} {'arm':<8} {'report':>6} {'accuracy':>9} {'AUC':>8} {'NFR [Wilson 95%]':>26} "
        f"{'relative NFR':>13} {'PFR':>8} {'gate':>7} {'epochs':>6} {'s':>5}"
    )
    lines += [header, "-" * len(header)]
    for run in runs:
        for arm in ARMS:
            r = run[arm]
            nfr = f"{r['nfr']:.4f} [{r['nfr_low']:.4f}, {r['nfr_high']:.4f}]"
            lines.append(
                f"{run['seed']:<5} {arm:<8} {r['report']:>6} {r['new_accuracy']:>9.4f} {_f(r['new_auc']):>8} {nfr:>26} "
                f"{_f(r['relative_nfr']):>13} {r['pfr']:>8.4f} {'passed' if r['gate_passed'] else 'failed':>7} "
                f"{r['epochs_run']:>6} {r['seconds_retrain'] + r['seconds_evaluation']:>5.1f}"
            )
    for arm in ARMS:
        values = [run[arm] for run in runs]
        lines.append(
            f"{'mean':<5} {arm:<8} {'':>6} accuracy {mean_sd([v['new_accuracy'] for v in values])}, "
            f"AUC {mean_sd([v['new_auc'] for v in values])}, NFR {mean_sd([v['nfr'] for v in values])}, "
            f"relative NFR {mean_sd([v['relative_nfr'] for v in values])}, PFR {mean_sd([v['pfr'] for v in values])}"
        )
    nfr_plain = statistics.fmean(run["plain"]["nfr"] for run in runs)
    nfr_deltas = [run["nfr_delta"] for run in runs]
    auc_deltas = [run["auc_delta"] for run in runs]
    mean_nfr_delta = statistics.fmean(nfr_deltas)
    mean_auc_delta = (
        None if any(d is None for d in auc_deltas) else statistics.fmean(d for d in auc_deltas if d is not None)
    )
    passed = meets_target(mean_nfr_delta, mean_auc_delta)
    cut = f" ({-mean_nfr_delta / nfr_plain:.1%} cut)" if nfr_plain > 0 else ""
    lines.append(
        f"distill - plain: NFR {mean_sd(nfr_deltas)}{cut}, AUC {mean_sd(auc_deltas)}; target: lower NFR at AUC >= "
        f"-{AUC_TOLERANCE} -> {'PASS' if passed else 'MISS'} (seeds meeting it: "
        f"{sum(run['meets_target'] for run in runs)}/{len(runs)})"
    )
    return lines, passed


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="retrain seeds 0..N-1 (default 3)")
    parser.add_argument("--streams", nargs="+", choices=sorted(INITIAL_UNTIL), default=["flights", "movielens"])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument(
        "--database-url", default=DEFAULT_DATABASE_URL, help="PostgreSQL scratch database, dropped first"
    )
    parser.add_argument("--stride", type=int, default=1, help="keep every Nth event of each stream (default 1: all)")
    parser.add_argument(
        "--params",
        type=json.loads,
        default={},
        help="retrain parameters over the service's defaults, as JSON (distill and seed are the benchmark's)",
    )
    parser.add_argument("--batch-rows", type=int, default=5000, help="rows per predict/feedback call (default 5000)")
    parser.add_argument("--device", default="auto", help="ADAPTIVE_DEVICE for the retrains: auto, cpu or cuda")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.stride < 1 or args.batch_rows < 1:
        parser.error("--seeds, --stride and --batch-rows must be at least 1")
    if not isinstance(args.params, dict) or {"distill", "seed"} & set(args.params):
        parser.error("--params must be a JSON object without distill or seed (the benchmark sets them)")
    if args.db == "postgres":
        try:
            scratch_database_name(args.database_url)
        except (ValueError, psycopg.ProgrammingError) as exc:  # ProgrammingError: not a connection URL
            parser.error(f"--database-url: {exc}")
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up on kill as on Ctrl-C
    workdir = Path(tempfile.mkdtemp(prefix="bench_retrain_flips_"))
    url = args.database_url if args.db == "postgres" else f"sqlite:///{workdir / 'bench.sqlite3'}"
    created = False
    try:
        print(f"database {url}: creating and migrating", flush=True)
        created = args.db == "postgres"
        prepare_database(args.db, url, bench_env(workdir, url, args.device))
        import torch

        from adaptive.services.retraining import validate_params

        params = {k: v for k, v in validate_params(args.params).items() if k not in ("distill", "seed")}
        print(
            f"retrain flip benchmark: {len(args.streams)} stream(s), seeds 0..{args.seeds - 1}, stride {args.stride}, "
            f"{server_description(args.db, url)}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{os.cpu_count()} CPUs; retrain parameters {json.dumps(params)}",
            flush=True,
        )
        started = time.perf_counter()
        results: dict[str, Any] = {"params": params, "stride": args.stride, "streams": {}}
        verdicts: dict[str, bool] = {}
        for name in args.streams:
            prepared = prepare_stream(name, args.stride, args.batch_rows)
            print(f"  {name}: v1 live, {prepared.n_events:,} events stored and labeled", flush=True)
            runs = []
            for seed in range(args.seeds):
                runs.append(run_seed(prepared.deployment_id, params, seed))
                print(
                    f"  {name} seed {seed}: NFR plain {runs[-1]['plain']['nfr']:.4f}, distill "
                    f"{runs[-1]['distill']['nfr']:.4f}; AUC plain {_f(runs[-1]['plain']['new_auc'])}, distill "
                    f"{_f(runs[-1]['distill']['new_auc'])}",
                    flush=True,
                )
            lines, verdicts[name] = stream_lines(prepared, runs)
            print("\n".join(lines), flush=True)
            results["streams"][name] = {"prepared": dataclasses.asdict(prepared), "runs": runs}
        summary = ", ".join(f"{name} {'PASS' if ok else 'MISS'}" for name, ok in verdicts.items())
        print(f"== target: {summary}; total {time.perf_counter() - started:.0f} s", flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (BenchError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        if args.keep:
            print(f"kept: {url} and {workdir}", file=sys.stderr)
        else:
            if created:
                drop_database(url)
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
