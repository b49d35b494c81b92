"""Vocabulary growth benchmark: does a retrain that grows its vocabularies learn the users v1 never saw?

    .venv/bin/python bench/vocab_growth.py [--seeds 3] [--min-count 3] [--fast] [--lr 0.001]
        [--json results.json] [--quick]

MovieLens (``adaptive.ml.streams``, 100k ratings 1995-2016, label: rating >= 4). v1 is fitted and
trained on 1995-1999 exactly as ``bench/stream_replay.py`` does (vocabularies of values seen at
least ``MIN_VOCAB_COUNT`` times, MLP [64, 32], ``train_initial``). 468 of the 671 users rate their
first movie later: v1 has never seen them, they are the naturally new users.

MovieLens users rate in bursts and rarely come back a year later, so a later *calendar* period
holds few ratings of users a retrain could have learned. The held-out period is therefore later
*per user*: of each user's ratings after 1999 (in time order), the first half is the retrain's new
data and the second half is scored. One retrain round as the retrain job runs it
(``adaptive.services.retraining``): those first halves as the recent data, a seeded sample of half
as many v1-period ratings as the replay, focal distillation against v1, the retrain job's
defaults (10 epochs, batch 256, lr 1e-3, patience 3 on a validation split of the recent data;
``--fast``: ``bench/stream_replay.py``'s periodic retrain, 6 epochs, batch 1024, patience 2).

Arms: ``v1`` (before), ``fixed`` (after, v1's vocabularies kept: the retrain job before
vocabulary growth) and ``grown`` (after, each vocabulary extended with the values the round's rows
show at least ``--min-count`` times, ``adaptive.ml.vocab``). Caveat: the recent data holds other
users' ratings that are later in time than some scored ones (a per-user split); the features
themselves are leak-free (``adaptive.ml.streams``), and all arms see the same rows.

The scored ratings are grouped by user: **new, added** (not in v1's vocabulary; the grown arm
added them: at least ``--min-count`` training rows), **new, too rare** (not in v1's vocabulary and
not added) and **v1 users**. The table shows the AUC of each group, mean ± sd over seeds, and the
delta of ``grown`` against ``fixed`` paired per seed. The exit status is 0 whatever the figures,
non-zero on errors. ``--quick``: v1 on 1995-1996, the ratings up to 1998, two epochs, one seed (a
smoke run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from adaptive.ml.architectures import TabularModel, build_model  # noqa: E402
from adaptive.ml.flips import roc_auc  # noqa: E402
from adaptive.ml.preprocessing import FeatureEncoder, fit_preprocessing, parse_schema  # noqa: E402
from adaptive.ml.streams import Stream, load_stream  # noqa: E402
from adaptive.ml.training import TrainConfig, continual_train, train_initial  # noqa: E402
from adaptive.ml.vocab import extend_model, grow_vocabularies  # noqa: E402
from adaptive.ml.weights import load_into  # noqa: E402
from bench.stream_replay import (  # noqa: E402
    ARCHITECTURE,
    INITIAL_TRAINING,
    INITIAL_UNTIL,
    MIN_VOCAB_COUNT,
    MODEL_CONFIG,
    QUICK_INITIAL_UNTIL,
    RETRAIN_TRAINING,
)

STREAM: Final = "movielens"
USER: Final = "user_id"
# The retrain job's defaults (adaptive.services.retraining.RETRAIN_PARAMS): 10 epochs, batch 256,
# lr 1e-3, focal distillation against the model it starts from, replay 0.5 per new row, patience 3.
RETRAIN: Final = TrainConfig(epochs=10, batch_size=256, lr=1e-3, distillation="focal", replay_fraction=0.5, patience=3)
# --fast: stream_replay.py's periodic retrain recipe (6 epochs, batch 1024, patience 2), about 4x cheaper.
FAST_RETRAIN: Final = replace(RETRAIN_TRAINING, distillation="focal", replay_fraction=0.5)
DEFAULT_MIN_COUNT: Final = 3  # the retrain job's vocab_min_count
# --quick: only the ratings before this instant, and this many epochs.
QUICK_UNTIL: Final = np.datetime64("1999-01-01T00:00:00")
QUICK_EPOCHS: Final = 2
ARMS: Final = ("v1", "fixed", "grown")
GROUPS: Final = ("new, added", "new, too rare", "v1 users")


@dataclass(frozen=True)
class Settings:
    """One benchmark run's choices (``--quick`` shrinks them)."""

    initial_until: np.datetime64
    until: np.datetime64 | None
    retrain: TrainConfig
    min_count: int


@dataclass(frozen=True)
class Split:
    """v1's period, and the later ratings cut per user into training (first half) and scored (second)."""

    n_initial: int
    train: np.ndarray
    scored: np.ndarray


@dataclass
class Run:
    """One seed: per arm the scores of the scored ratings; their groups; what the grown arm added."""

    scores: dict[str, np.ndarray]
    groups: np.ndarray
    added: dict[str, int]
    seconds: float


def split(stream: Stream, settings: Settings) -> Split:
    """v1's ratings, then per user the first half of their later ratings to train on, the rest to score."""
    n_initial = int(np.searchsorted(stream.times, settings.initial_until, side="left"))
    stop = len(stream) if settings.until is None else int(np.searchsorted(stream.times, settings.until, side="left"))
    per_user: dict[str, list[int]] = {}
    for i in range(n_initial, stop):
        per_user.setdefault(stream.rows[i][USER], []).append(i)
    train: list[int] = []
    scored: list[int] = []
    for indexes in per_user.values():
        half = (len(indexes) + 1) // 2
        train += indexes[:half]
        scored += indexes[half:]
    return Split(n_initial, np.array(sorted(train), dtype=np.int64), np.array(sorted(scored), dtype=np.int64))


def run_seed(stream: Stream, data: Split, settings: Settings, seed: int) -> Run:
    """Train v1, retrain it with and without growth, score the held-out ratings with all three."""
    started = time.perf_counter()
    schema = parse_schema(stream.schema)
    initial = stream.rows[: data.n_initial]
    stats = fit_preprocessing(schema, initial, min_count=MIN_VOCAB_COUNT)
    encoder = FeatureEncoder(schema, stats)
    v1, _ = train_initial(
        ARCHITECTURE,
        MODEL_CONFIG,
        encoder.spec,
        1,
        (encoder.encode(initial), _labels(stream, np.arange(data.n_initial))),
        replace(INITIAL_TRAINING, seed=seed),
    )
    rng = np.random.default_rng(seed)
    size = min(data.n_initial, round(settings.retrain.replay_fraction * len(data.train)))
    replay = np.sort(rng.choice(data.n_initial, size=size, replace=False))
    rows = [stream.rows[i] for i in data.train] + [stream.rows[i] for i in replay]
    growth = grow_vocabularies(schema, stats, rows, min_count=settings.min_count)
    models = {
        "v1": (v1, stats),
        "fixed": (_retrain(stream, v1, stats, data.train, replay, settings, seed), stats),
        "grown": (
            _retrain(stream, extend_model(v1, schema, stats, growth), growth.stats, data.train, replay, settings, seed),
            growth.stats,
        ),
    }
    scored_rows = [stream.rows[i] for i in data.scored]
    scores = {
        arm: _predict(model, FeatureEncoder(schema, arm_stats), scored_rows)
        for arm, (model, arm_stats) in models.items()
    }
    v1_users = set(stats["categorical"][USER]["vocab"])
    added = set(growth.added[USER])
    groups = np.array(
        [
            "v1 users" if row[USER] in v1_users else "new, added" if row[USER] in added else "new, too rare"
            for row in scored_rows
        ]
    )
    return Run(scores, groups, growth.counts(), time.perf_counter() - started)


def _retrain(
    stream: Stream,
    model: TabularModel,
    stats: dict[str, Any],
    train: np.ndarray,
    replay: np.ndarray,
    settings: Settings,
    seed: int,
) -> TabularModel:
    """One round from ``model`` (v1, or v1 extended to ``stats``): the recent rows plus the replay sample."""
    encoder = FeatureEncoder(parse_schema(stream.schema), stats)
    recent = (encoder.encode([stream.rows[i] for i in train]), _labels(stream, train))
    older = (encoder.encode([stream.rows[i] for i in replay]), _labels(stream, replay))
    config = replace(settings.retrain, replay_size=len(replay), seed=seed)
    result = continual_train(model, recent, older, config)
    candidate = build_model(ARCHITECTURE, MODEL_CONFIG, encoder.spec, 1)
    load_into(candidate, result.state_dict)
    return candidate.eval()


def _labels(stream: Stream, index: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(stream.labels[index].astype(np.float32))


def _predict(model: TabularModel, encoder: FeatureEncoder, rows: list[dict[str, Any]]) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model.predict_proba(encoder.encode(rows)).double().numpy()


# --- report ---------------------------------------------------------------------------------------


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def report(stream: Stream, data: Split, runs: list[Run], settings: Settings, seeds: Sequence[int]) -> dict[str, Any]:
    """Print the table and return the figures as JSON-ready data."""
    labels = stream.labels[data.scored]
    first = runs[0]
    print(
        f"vocab growth benchmark: {STREAM}, v1 on {data.n_initial:,} ratings before "
        f"{str(settings.initial_until)[:10]}; "
        f"retrain on {len(data.train):,} later ratings (first half per user), {len(data.scored):,} scored; "
        f"seeds {seeds[0]}..{seeds[-1]}; min_count {settings.min_count}"
    )
    config = settings.retrain
    print(
        f"retrain: {config.epochs} epochs, batch {config.batch_size}, lr {config.lr:g}, {config.distillation} "
        f"distillation, patience {config.patience}; the grown arm added {first.added.get(USER, 0)} users and "
        f"{first.added.get('movie_id', 0)} movies"
    )
    print()
    print("| ratings of | n | users | v1 (before) | fixed (after) | grown (after) | grown - fixed |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    scored_users = np.array([stream.rows[i][USER] for i in data.scored])
    figures: dict[str, Any] = {}
    for group in GROUPS:
        aucs: dict[str, list[float]] = {arm: [] for arm in ARMS}
        deltas: list[float] = []
        for run in runs:
            mask = run.groups == group
            per_arm = {arm: roc_auc(run.scores[arm][mask], labels[mask]) for arm in ARMS}
            for arm, auc in per_arm.items():
                if auc is not None:
                    aucs[arm].append(auc)
            if per_arm["grown"] is not None and per_arm["fixed"] is not None:
                deltas.append(per_arm["grown"] - per_arm["fixed"])
        mask = first.groups == group
        n, users = int(mask.sum()), len(set(scored_users[mask].tolist()))
        cells = " | ".join(_mean_sd(aucs[arm]) for arm in ARMS)
        wins = sum(d > 0 for d in deltas)
        delta = f"{statistics.mean(deltas):+.4f} ({wins}/{len(deltas)} seeds > 0)" if deltas else "-"
        print(f"| {group} | {n:,} | {users} | {cells} | {delta} |")
        figures[group] = {"n": n, "users": users, "auc": aucs, "delta_grown_fixed": deltas}
    print()
    print(f"seconds per seed: {', '.join(f'{run.seconds:.0f}' for run in runs)}")
    return {
        "settings": {
            "min_count": settings.min_count,
            "seeds": list(seeds),
            "n_train": len(data.train),
            "epochs": config.epochs,
            "batch_size": config.batch_size,
            "lr": config.lr,
        },
        "added": first.added,
        "groups": figures,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", type=int, default=3, help="model seeds 0..N-1 (default 3)")
    parser.add_argument("--min-count", type=int, default=DEFAULT_MIN_COUNT, help="vocab_min_count of the grown arm")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--fast", action="store_true", help="stream_replay.py's cheaper retrain recipe")
    parser.add_argument("--lr", type=float, help="the retrain's learning rate (default: the recipe's)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1995-1998, two epochs, one seed")
    args = parser.parse_args(argv)
    retrain = FAST_RETRAIN if args.fast else RETRAIN
    if args.lr is not None:
        retrain = replace(retrain, lr=args.lr, min_lr=min(retrain.min_lr, args.lr))
    if args.quick:
        settings = Settings(
            QUICK_INITIAL_UNTIL[STREAM], QUICK_UNTIL, replace(FAST_RETRAIN, epochs=QUICK_EPOCHS), args.min_count
        )
        seeds = [0]
    else:
        settings = Settings(INITIAL_UNTIL[STREAM], None, retrain, args.min_count)
        seeds = list(range(args.seeds))
    stream = load_stream(STREAM)
    data = split(stream, settings)
    runs = [run_seed(stream, data, settings, seed) for seed in seeds]
    figures = report(stream, data, runs, settings, seeds)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
