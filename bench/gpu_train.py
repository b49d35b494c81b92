"""GPU check for retraining: the same continual-training round on CUDA and on the CPU.

    python bench/gpu_train.py [--rows 400000] [--epochs 3] [--batch-size 512] [--devices cuda,cpu]
        [--seed 0] [--no-sync] [--json PATH]

It needs nothing but the engine's pure modules (``adaptive.ml.architectures``, ``.preprocessing``
and ``.training``), PyTorch and NumPy: no Django, SciPy or pandas, so it runs as it is on a GPU host
with its own Python and PyTorch. It puts the repository root on ``sys.path`` itself.

Data: ``--rows`` synthetic tabular events in time order, drawn with NumPy from ``--seed``: 12
numeric features (correlated Gaussians, skewed amounts, hours of the day, two with covariate drift)
and 4 categorical ones with Zipf-like frequencies, labelled by a logistic model whose weights and
category effects move from an "old" concept to a "new" one over time. The first half of the events
is the old period, the second half the new one; numeric features are standardised with the old
period's mean and std, as a version's preprocessing stats would be.

1. An initial version trains on the old period (``train_initial``), on the first device listed that
   is available.
2. Then, for each device: a short warm-up round (CUDA context, kernels, allocator), and the measured
   round: ``continual_train`` from the initial version on the new period, with a replay sample of the
   old period and focal distillation against the initial version, i.e. the retrain job's code path.
   Every device gets the same data, seed and starting weights.

Printed per device: samples/s (training rows x epochs run / seconds of the training loop,
``TrainResult.samples_per_second``), epochs, the best epoch's validation AUC and accuracy, and the
split of the loop's time between data (batch gathering, host-to-device copies) and compute (teacher
predictions, forward, backward, optimiser, validation). On CUDA the split is measured with the
engine's ``synchronize`` hook (``torch.cuda.synchronize`` before every clock reading), which costs
one device round trip per section; ``--no-sync`` leaves it off, for samples/s exactly as a retrain
job sees them (the split is then not meaningful on CUDA). Early stopping is off so that every device
runs the same number of epochs. The last line is the ratio ``cuda/cpu samples/s``.

The exit status is 0 whether or not CUDA was there to measure (the skip is printed), non-zero on
errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from adaptive.ml.architectures import TabularModel  # noqa: E402
from adaptive.ml.preprocessing import InputSpec, TabularBatch  # noqa: E402
from adaptive.ml.training import Progress, TrainConfig, TrainResult, continual_train, train_initial  # noqa: E402

N_NUMERIC: Final = 12
# Values per categorical feature (a carrier-like, a region-like, a product-like and an id-like one);
# the model's tables get one more row each for the encoder's unknown bucket, index 0.
CARDINALITIES: Final = (8, 30, 120, 400)
POSITIVE_RATE: Final = 0.3

ARCHITECTURE: Final = "mlp"
MODEL_CONFIG: Final = {"hidden": [128, 64], "embedding_dim": 8, "dropout": 0.0}
# The schedules bench/flips.py tuned the engine with (its INITIAL and UPDATE), with early stopping
# off: a throughput comparison needs the same number of epochs on every device.
INITIAL: Final = TrainConfig(lr=3e-3, min_lr=1e-5, warmup_fraction=0.05, weight_decay=1e-5, patience=None)
RETRAIN: Final = TrainConfig(
    lr=2e-3,
    min_lr=1e-5,
    warmup_fraction=0.1,
    weight_decay=1e-5,
    replay_fraction=0.5,
    distillation="focal",
    distill_alpha=1.0,
    distill_beta=5.0,
    temperature=2.0,
    distill_weight=0.2,
    patience=None,
)
WARMUP_BATCHES: Final = 8


@dataclass(frozen=True)
class Events:
    """Synthetic events in time order, encoded as the model sees them."""

    batch: TabularBatch
    labels: torch.Tensor
    spec: InputSpec

    def __len__(self) -> int:
        return len(self.labels)

    def rows(self, start: int, stop: int) -> tuple[TabularBatch, torch.Tensor]:
        return self.batch[start:stop], self.labels[start:stop]


@dataclass(frozen=True)
class DeviceRun:
    """The figures of one measured round on one device."""

    device: str
    device_name: str
    synchronized: bool
    samples_per_second: float
    epochs: int
    best_epoch: int
    val_auc: float | None
    val_accuracy: float | None
    seconds_data: float
    seconds_compute: float
    seconds_wall: float
    n_train: int
    n_replay: int
    n_validation: int

    @property
    def data_share(self) -> float:
        """Share of the training loop's time spent on data (gathering, transfers)."""
        loop = self.seconds_data + self.seconds_compute
        return self.seconds_data / loop if loop > 0 else 0.0


def synthetic_events(rows: int, seed: int) -> Events:
    """``rows`` events whose decision boundary drifts from an old concept to a new one (module docstring)."""
    if rows < 4:
        raise ValueError(f"--rows must be at least 4, got {rows}")
    rng = np.random.default_rng(seed)
    # The concept is drawn first, so it is the same for every --rows.
    weights_old = rng.normal(0.0, 0.8, N_NUMERIC)
    weights_new = weights_old.copy()
    weights_new[[0, 4, 9]] *= -1.0  # three features turn around: the boundary rotates
    weights_new[[2, 6]] += 0.8
    effects_old = [rng.normal(0.0, 0.7, k) for k in CARDINALITIES]
    effects_new = [effects.copy() for effects in effects_old]
    effects_new[0] = rng.normal(0.0, 0.7, CARDINALITIES[0])  # the carrier-like feature changes meaning

    t = np.linspace(0.0, 1.0, rows)
    mixing = np.array([[1.0, 0.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0], [0.0, 0.3, 0.95, 0.0], [0.2, 0.0, 0.4, 0.9]])
    gaussian = rng.standard_normal((rows, 4)) @ mixing.T
    amounts = rng.lognormal(mean=[0.0, 1.0, 2.0, 3.0], sigma=0.9, size=(rows, 4))
    hours = rng.uniform(0.0, 24.0, (rows, 2))
    drifting = rng.standard_normal((rows, 2)) + np.outer(t, [1.5, -1.0])  # covariate drift
    raw = np.concatenate([gaussian, amounts, hours, drifting], axis=1)
    codes = np.stack([rng.choice(k, size=rows, p=_zipf(k)) for k in CARDINALITIES], axis=1)  # 0-based value index

    # What the label depends on: the numeric features bent the way real ones are (log amounts,
    # cyclic hours) plus one interaction, so the MLP has something to learn beyond a linear model.
    signal = np.concatenate([gaussian, np.log1p(amounts), np.sin(2 * np.pi * hours / 24), drifting], axis=1)
    weights = (1.0 - t)[:, None] * weights_old + t[:, None] * weights_new
    logit = (signal * weights).sum(axis=1) + 0.7 * gaussian[:, 0] * gaussian[:, 1]
    for column in range(len(CARDINALITIES)):
        value = codes[:, column]
        logit += (1.0 - t) * effects_old[column][value] + t * effects_new[column][value]
    logit -= np.quantile(logit, 1.0 - POSITIVE_RATE)
    labels = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))

    # Standardised with the old period's stats, as the initial version's preprocessing would be.
    old = raw[: rows // 2]
    mean, std = old.mean(axis=0), old.std(axis=0)
    scaled = ((raw - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    batch = TabularBatch(torch.from_numpy(scaled), torch.from_numpy(codes + 1))  # 0 is the unknown bucket
    spec = InputSpec(n_numeric=N_NUMERIC, cardinalities=tuple(k + 1 for k in CARDINALITIES))
    return Events(batch=batch, labels=torch.from_numpy(labels.astype(np.float32)), spec=spec)


def _zipf(k: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** 1.1
    return weights / weights.sum()


def synchronizer(device: torch.device, enabled: bool = True) -> Callable[[], None] | None:
    """The engine's timing hook for ``device``: ``torch.cuda.synchronize`` on CUDA, else ``None``.

    CPU kernels run synchronously, so the CPU's split is exact without a hook.
    """
    if enabled and device.type == "cuda":
        return functools.partial(torch.cuda.synchronize, device)
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def unavailable(device: torch.device) -> str | None:
    """Why ``device`` cannot run here, or ``None`` when it can."""
    if device.type == "cpu":
        return None
    if not torch.cuda.is_available():
        build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a build without CUDA"
        return f"torch.cuda.is_available() is False (torch {torch.__version__}, {build})"
    if device.index is not None and device.index >= torch.cuda.device_count():
        return f"only {torch.cuda.device_count()} CUDA device(s)"
    return None


def measure_retrain(
    initial: TabularModel,
    events: Events,
    config: TrainConfig,
    device: torch.device,
    synchronize: Callable[[], None] | None,
    progress: Callable[[Progress], None] | None = None,
) -> tuple[DeviceRun, TrainResult]:
    """One warm-up round on a slice, then the measured retrain of ``initial`` on ``device``.

    New data: the second half of ``events``; replay: the first half.
    """
    half = len(events) // 2
    new_data, replay_data = events.rows(half, len(events)), events.rows(0, half)
    config = dataclasses.replace(config, device=str(device))

    # The first round on a device pays for one-time set-up (CUDA context, cuBLAS handles, kernel
    # loading, the caching allocator's first blocks): a warm-up round keeps it out of the figures.
    warmup_rows = min(WARMUP_BATCHES * config.batch_size, len(events) - half)
    warmup_new = events.rows(half, half + warmup_rows)
    continual_train(initial, warmup_new, replay_data, dataclasses.replace(config, epochs=1), synchronize=synchronize)

    started = time.perf_counter()
    result = continual_train(initial, new_data, replay_data, config, progress=progress, synchronize=synchronize)
    if synchronize is not None:
        synchronize()
    wall = time.perf_counter() - started

    best = result.curve[result.best_epoch - 1]
    run = DeviceRun(
        device=str(device),
        device_name=device_name(device),
        synchronized=synchronize is not None,
        samples_per_second=result.samples_per_second,
        epochs=len(result.curve),
        best_epoch=result.best_epoch,
        val_auc=best["val_auc"],
        val_accuracy=best["val_accuracy"],
        seconds_data=result.seconds_data,
        seconds_compute=result.seconds_compute,
        seconds_wall=wall,
        n_train=result.n_train,
        n_replay=result.n_replay,
        n_validation=result.n_validation,
    )
    return run, result


def cuda_cpu_ratio(runs: Sequence[DeviceRun]) -> float | None:
    """samples/s of the first CUDA run over the CPU run's, ``None`` without both."""
    cuda = next((run for run in runs if run.device.startswith("cuda")), None)
    cpu = next((run for run in runs if run.device == "cpu"), None)
    if cuda is None or cpu is None or cpu.samples_per_second <= 0:
        return None
    return cuda.samples_per_second / cpu.samples_per_second


def print_run(run: DeviceRun) -> None:
    auc = "n/a" if run.val_auc is None else f"{run.val_auc:.4f}"
    accuracy = "n/a" if run.val_accuracy is None else f"{run.val_accuracy:.4f}"
    loop = run.seconds_data + run.seconds_compute
    if run.device.startswith("cuda") and not run.synchronized:
        how = "not synchronized (--no-sync): queued GPU work lands in compute"
    elif run.synchronized:
        how = "synchronized"
    else:
        how = "CPU, exact"
    print(f"  samples/s: {run.samples_per_second:,.0f}")
    print(f"  epochs: {run.epochs} (best {run.best_epoch}), val AUC {auc}, val accuracy {accuracy}")
    print(
        f"  time: data/transfer {run.data_share:.1%} ({run.seconds_data:.2f} s), "
        f"compute {1 - run.data_share:.1%} ({run.seconds_compute:.2f} s), loop {loop:.2f} s, "
        f"wall {run.seconds_wall:.2f} s [{how}]",
        flush=True,
    )


def parse_devices(text: str) -> list[torch.device]:
    devices = []
    for name in (part.strip() for part in text.split(",")):
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise argparse.ArgumentTypeError(f"unknown device {name!r}: {error}") from None
        if device.type not in ("cpu", "cuda"):
            raise argparse.ArgumentTypeError(f"device {name!r}: only cpu and cuda[:N] are measured")
        if device not in devices:
            devices.append(device)
    return devices


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000, help="events; half old, half new (default 400,000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the initial and the measured rounds")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--devices", type=parse_devices, default="cuda,cpu", help="comma-separated, in order")
    parser.add_argument("--seed", type=int, default=0, help="data, weights and batch order")
    parser.add_argument("--no-sync", action="store_true", help="CUDA without the synchronize hook (see above)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    events = synthetic_events(args.rows, args.seed)
    half = len(events) // 2
    initial_config = dataclasses.replace(INITIAL, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    retrain_config = dataclasses.replace(RETRAIN, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA build"
    print(
        f"gpu_train: {len(events):,} events ({half:,} old, {len(events) - half:,} new), {N_NUMERIC} numeric + "
        f"{len(CARDINALITIES)} categorical features, {events.labels.mean().item():.1%} positive, seed {args.seed}"
    )
    print(
        f"torch {torch.__version__} ({cuda}), Python {platform.python_version()}, CPU threads {torch.get_num_threads()}"
    )
    print(
        f"model: {ARCHITECTURE} {MODEL_CONFIG['hidden']}; retrain: batch {args.batch_size}, {args.epochs} epochs, "
        f"replay {RETRAIN.replay_fraction:g} x new, focal distillation, validation {RETRAIN.validation_fraction:g} "
        "of new",
        flush=True,
    )

    skipped = {str(device): reason for device in args.devices if (reason := unavailable(device)) is not None}
    runnable = [device for device in args.devices if str(device) not in skipped]
    initial_device = runnable[0] if runnable else torch.device("cpu")
    clock = time.perf_counter()
    initial, initial_result = train_initial(
        ARCHITECTURE,
        MODEL_CONFIG,
        events.spec,
        1,
        events.rows(0, half),
        dataclasses.replace(initial_config, device=str(initial_device)),
    )
    initial_auc = initial_result.curve[initial_result.best_epoch - 1]["val_auc"]
    print(
        f"initial version: {initial_device}, {initial_result.n_train:,} rows x {len(initial_result.curve)} epochs in "
        f"{time.perf_counter() - clock:.1f} s, val AUC {'n/a' if initial_auc is None else f'{initial_auc:.4f}'}",
        flush=True,
    )

    runs: list[DeviceRun] = []
    for device in args.devices:
        if str(device) in skipped:
            print(f"== {device}: skipped: {skipped[str(device)]}", flush=True)
            continue
        print(f"== {device} ({device_name(device)})", flush=True)

        def report(progress: Progress) -> None:
            print(f"  epoch {progress.epoch}/{args.epochs}: train loss {progress.loss:.4f}", flush=True)

        run, _ = measure_retrain(
            initial, events, retrain_config, device, synchronizer(device, not args.no_sync), progress=report
        )
        print(
            f"  rows: {run.n_train:,} trained ({run.n_train - run.n_replay:,} new + {run.n_replay:,} replay), "
            f"{run.n_validation:,} validation"
        )
        print_run(run)
        runs.append(run)

    ratio = cuda_cpu_ratio(runs)
    if ratio is None:
        print("cuda/cpu samples/s: n/a (needs a CUDA run and a CPU run)")
    else:
        print(f"cuda/cpu samples/s: {ratio:.2f}x")

    if args.json is not None:
        figures: dict[str, Any] = {
            "rows": len(events),
            "seed": args.seed,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "python": platform.python_version(),
            "model": {"architecture": ARCHITECTURE, **MODEL_CONFIG},
            "retrain_config": {name: getattr(retrain_config, name) for name in retrain_config.__dataclass_fields__},
            "initial": {"device": str(initial_device), "val_auc": initial_auc},
            "runs": [{**dataclasses.asdict(run), "data_share": run.data_share} for run in runs],
            "skipped": skipped,
            "cuda_cpu_samples_per_second": ratio,
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
