"""Memory benchmark: exact vs sketch error memory throughput, and compensation's cost per forward pass.

    .venv/bin/python bench/memory.py [--sizes 10000,100000,1000000] [--dim 64] [--seconds 1.0]
        [--threads 1] [--overhead-entries 100000] [--rounds 3] [--sketch-sizes 32x10,8x12:plain] [--quick]

What it measures (the memories and the compensation are described in docs/design.md):

1. Throughput, rows/s, of ``add`` and ``estimate`` for the exact memory (capacity = size) and the
   sketch (module defaults, see adaptive/ml/memory/config.py), each filled with ``size`` random unit keys of
   ``--dim`` dimensions, at batch 1 and batch 256. Each figure is a time-bounded loop of about
   ``--seconds`` (at least 3 calls, after one warm-up call). Adds go into the full memory, so the
   exact one is evicting as it would in production.
2. Sketch/exact estimate speed ratio at the largest size (the target, >= 20x, is set at 1M entries).
3. Compensation overhead: a DeepFM-style model (12 numeric + 4 categorical features, hidden
   [64, 32], so 41-dim keys) at batch 256; the bare forward pass (``predict_proba``) against
   ``Compensator.predict`` (one ``embed`` for score and key, key extraction, memory read,
   compensation) with an exact and a sketch memory of ``--overhead-entries`` rows written from the
   model's own keys. The three are timed in turn, ``--rounds`` times, and the medians compared, so
   a background hiccup on a shared machine hits them alike. Target: <= 20% over the forward pass.
   The same is timed for the sketch shapes of ``--sketch-sizes`` (tables x bits, first-order or
   plain read), which trade accuracy (bench/stream_replay.py) against serving cost.
   Both wall time and the process's CPU time are reported: on a busy shared machine wall time
   also counts the time other processes held the CPU, CPU time does not. With torch on one thread
   (the default) every step runs on the calling thread, so CPU time is the work done, and the
   verdict uses it; with more threads it uses wall time, as idle worker threads may spin.

Torch runs single-threaded by default (``--threads 1``; ``0`` keeps torch's own choice): on a shared
machine one thread gives steadier figures, and serving workers run one thread each. The exit status
is 0 whether the targets are met or not: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
import torch.nn.functional as F

ROOT: Final = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

from adaptive.ml.architectures import TabularModel, build_model  # noqa: E402
from adaptive.ml.compensation import (  # noqa: E402
    CompensationConfig,
    Compensator,
    compensate,
    fit_key_mean,
    keys_from_hidden,
)
from adaptive.ml.memory import (  # noqa: E402
    MAX_SKETCH_BITS,
    MAX_SKETCH_BUCKETS,
    MAX_SKETCH_TABLES,
    ErrorMemory,
    make_memory,
)
from adaptive.ml.preprocessing import InputSpec, TabularBatch  # noqa: E402

BATCHES: Final = (1, 256)
TARGET_RATIO: Final = 20.0
TARGET_OVERHEAD: Final = 0.20
RATIO_SIZE: Final = 1_000_000  # where the speed-ratio target is set
FILL_CHUNK: Final = 65_536
POOL_ROWS: Final = 4096  # distinct rows cycled through by the timed adds and reads
# The overhead model: 16 features, as in the ingestion benchmark's flights deployment.
OVERHEAD_SPEC: Final = InputSpec(n_numeric=12, cardinalities=(20, 50, 10, 30))
OVERHEAD_HIDDEN: Final = [64, 32]
OVERHEAD_BATCH: Final = 256
OVERHEAD_QUERY_BATCHES: Final = 8
QUICK_SIZES: Final = (1000,)
QUICK_SECONDS: Final = 0.02
QUICK_OVERHEAD_ENTRIES: Final = 1000
# Sketch shapes whose compensation overhead is also measured (--sketch-sizes): TABLESxBITS, with
# ":plain" for the paper's plain read (prior None) instead of the first-order read.
DEFAULT_SKETCH_SIZES: Final = "32x10,16x12,8x12,8x10,16x10:plain,8x12:plain,4x12:plain"


@dataclass(frozen=True)
class SketchSize:
    tables: int
    bits: int
    plain: bool  # the plain read (prior None) instead of the module's first-order default

    @property
    def label(self) -> str:
        return f"{self.tables}x{self.bits}" + (" plain" if self.plain else " first-order")

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"n_tables": self.tables, "n_bits": self.bits}
        if self.plain:
            params["prior"] = None
        return params


def parse_sketch_sizes(text: str) -> list[SketchSize]:
    """``"32x10,8x12:plain"`` -> sketch shapes; ValueError naming the bad item on anything else,
    including shapes outside the sketch's limits."""
    sizes = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        shape, _, read = item.partition(":")
        tables, _, bits = shape.partition("x")
        if read not in ("", "plain") or not tables.isdigit() or not bits.isdigit():
            raise ValueError(f"{item!r} is not TABLESxBITS or TABLESxBITS:plain")
        size = SketchSize(int(tables), int(bits), read == "plain")
        # Checked here, not when the sketch is built minutes into the run.
        if not 1 <= size.tables <= MAX_SKETCH_TABLES or not 1 <= size.bits <= MAX_SKETCH_BITS:
            raise ValueError(f"{item!r}: tables must be 1-{MAX_SKETCH_TABLES} and bits 1-{MAX_SKETCH_BITS}")
        if size.tables << size.bits > MAX_SKETCH_BUCKETS:
            raise ValueError(f"{item!r}: {size.tables << size.bits} buckets is above the limit of {MAX_SKETCH_BUCKETS}")
        sizes.append(size)
    return sizes


@dataclass(frozen=True)
class Rows:
    """Keys, binary labels and base scores, on CPU."""

    keys: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor

    def slice(self, start: int, stop: int) -> Rows:
        return Rows(self.keys[start:stop], self.labels[start:stop], self.scores[start:stop])


def random_rows(n: int, dim: int, generator: torch.Generator) -> Rows:
    """Random unit keys (uniform on the sphere), Bernoulli(0.3) labels and uniform scores."""
    keys = F.normalize(torch.randn(n, dim, generator=generator), dim=1)
    labels = (torch.rand(n, generator=generator) < 0.3).float()
    return Rows(keys, labels, torch.rand(n, generator=generator))


@dataclass(frozen=True)
class Timing:
    """Seconds per call: wall time, and the CPU time of the process (all its threads)."""

    wall_s: float
    cpu_s: float


def seconds_per_call(fn: Callable[[], object], seconds: float, min_calls: int = 3) -> Timing:
    """Mean time of ``fn`` over a loop of about ``seconds`` wall time (and at least ``min_calls``)."""
    fn()  # warm-up: first-call allocations and lazy initialisation are not what is measured
    calls = 0
    start, start_cpu = time.perf_counter(), time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= min_calls:
            return Timing(elapsed / calls, (time.process_time() - start_cpu) / calls)


def cycling(pool: Rows, batch: int) -> Callable[[], Rows]:
    """A function returning the next ``batch`` rows of ``pool`` each call, wrapping around."""
    position = 0

    def next_rows() -> Rows:
        nonlocal position
        if position + batch > pool.keys.shape[0]:
            position = 0
        rows = pool.slice(position, position + batch)
        position += batch
        return rows

    return next_rows


# --- 1 and 2: throughput ----------------------------------------------------------------------------


@dataclass
class Throughput:
    kind: str
    entries: int
    nbytes: int
    fill_s: float
    add: dict[int, float]  # batch -> rows/s
    estimate: dict[int, float]


def fill(memory: ErrorMemory, n: int, dim: int, generator: torch.Generator) -> float:
    """Write ``n`` random rows in large batches; returns the seconds it took."""
    start = time.perf_counter()
    for offset in range(0, n, FILL_CHUNK):
        rows = random_rows(min(FILL_CHUNK, n - offset), dim, generator)
        memory.add(rows.keys, rows.labels, rows.scores)
    return time.perf_counter() - start


def measure_throughput(kind: str, size: int, dim: int, seconds: float, seed: int) -> Throughput:
    generator = torch.Generator().manual_seed(seed)
    memory = make_memory(kind, dim, 1, capacity=size) if kind == "exact" else make_memory(kind, dim, 1)
    fill_s = fill(memory, size, dim, generator)
    pool = random_rows(POOL_ROWS, dim, generator)
    add: dict[int, float] = {}
    estimate: dict[int, float] = {}
    for batch in BATCHES:
        next_rows = cycling(pool, batch)

        def add_once(next_rows: Callable[[], Rows] = next_rows) -> None:
            rows = next_rows()
            memory.add(rows.keys, rows.labels, rows.scores)

        def estimate_once(next_rows: Callable[[], Rows] = next_rows) -> None:
            memory.estimate(next_rows().keys)

        estimate[batch] = batch / seconds_per_call(estimate_once, seconds).wall_s
        add[batch] = batch / seconds_per_call(add_once, seconds).wall_s
    return Throughput(kind, size, memory.nbytes, fill_s, add, estimate)


# --- 3: compensation overhead -----------------------------------------------------------------------


@dataclass
class Overhead:
    forward: Timing
    compensated: dict[str, Timing]  # memory kind -> time per batch
    by_size: dict[SketchSize, tuple[Timing, int]]  # sketch shape -> time per batch, bytes
    sketch_parts: dict[str, Timing]  # step -> time per batch, for the sketch path
    key_dim: int
    entries: int
    load: tuple[float, float]  # 1-minute load average before and after the timed rounds
    hidden: list[int]


def random_batch(n: int, generator: torch.Generator) -> TabularBatch:
    numeric = torch.randn(n, OVERHEAD_SPEC.n_numeric, generator=generator)
    columns = [torch.randint(0, c, (n,), generator=generator) for c in OVERHEAD_SPEC.cardinalities]
    return TabularBatch(numeric, torch.stack(columns, dim=1))


def filled_memory(
    kind: str, model: TabularModel, key_mean: torch.Tensor, entries: int, seed: int, **params: Any
) -> ErrorMemory:
    """A memory of ``entries`` rows written from the model's own keys and scores, labels drawn from them."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "exact":
        params["capacity"] = entries
    memory = make_memory(kind, model.hidden_dim, 1, **params)
    with torch.inference_mode():
        for offset in range(0, entries, 8192):
            batch = random_batch(min(8192, entries - offset), generator)
            h = model.embed(batch)
            p_base = model.predict_proba(batch)
            labels = (torch.rand(len(batch), generator=generator) < p_base).float()
            memory.add(keys_from_hidden(h, key_mean), labels, p_base)
    return memory


def measure_overhead(
    entries: int,
    seconds: float,
    rounds: int,
    seed: int,
    hidden: list[int] = OVERHEAD_HIDDEN,
    sketch_sizes: Sequence[SketchSize] = (),
) -> Overhead:
    torch.manual_seed(seed)
    model = build_model("deepfm", {"hidden": hidden}, OVERHEAD_SPEC, 1).eval()
    generator = torch.Generator().manual_seed(seed)
    key_mean = fit_key_mean(model, random_batch(10_000, generator))
    config = CompensationConfig()
    compensators = {
        kind: Compensator(model, key_mean, filled_memory(kind, model, key_mean, entries, seed + 1), config)
        for kind in ("exact", "sketch")
    }
    sized = {
        size: Compensator(
            model, key_mean, filled_memory("sketch", model, key_mean, entries, seed + 1, **size.params()), config
        )
        for size in sketch_sizes
    }
    queries = [random_batch(OVERHEAD_BATCH, generator) for _ in range(OVERHEAD_QUERY_BATCHES)]
    position = 0

    def next_batch() -> TabularBatch:
        nonlocal position
        position = (position + 1) % len(queries)
        return queries[position]

    def forward() -> None:
        with torch.inference_mode():
            model.predict_proba(next_batch())

    def predicting(compensator: Compensator) -> Callable[[], object]:
        return lambda: compensator.predict(next_batch())

    timed: dict[str, Callable[[], object]] = {"forward": forward}
    timed.update({kind: predicting(compensator) for kind, compensator in compensators.items()})
    timed.update({size.label: predicting(compensator) for size, compensator in sized.items()})

    # The sketch path's steps on their own, to show where its time goes.
    sketch = compensators["sketch"].memory
    with torch.inference_mode():
        h = model.embed(queries[0])
        p_base = model.predict_proba(queries[0])
        keys = keys_from_hidden(h, key_mean)
        readout = sketch.estimate(keys)
    parts: dict[str, Callable[[], object]] = {
        "key extraction": lambda: keys_from_hidden(h, key_mean),
        "sketch estimate": lambda: sketch.estimate(keys),
        "compensate": lambda: compensate(p_base, readout, config),
    }

    samples: dict[str, list[Timing]] = {name: [] for name in (*timed, *parts)}
    load_before = load_average()
    for _ in range(rounds):
        for name, fn in (*timed.items(), *parts.items()):
            samples[name].append(seconds_per_call(fn, seconds))
    medians = {
        name: Timing(
            statistics.median(timing.wall_s for timing in values), statistics.median(timing.cpu_s for timing in values)
        )
        for name, values in samples.items()
    }
    return Overhead(
        forward=medians["forward"],
        compensated={kind: medians[kind] for kind in compensators},
        by_size={size: (medians[size.label], compensator.memory.nbytes) for size, compensator in sized.items()},
        sketch_parts={name: medians[name] for name in parts},
        key_dim=model.hidden_dim,
        entries=entries,
        load=(load_before, load_average()),
        hidden=list(hidden),
    )


def load_average() -> float:
    """The 1-minute load average (0 where the platform has none): on a shared machine, how many
    other runnable processes the timings competed with."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


# --- report -------------------------------------------------------------------------------------------


def rate(rows_per_s: float) -> str:
    if rows_per_s >= 1e6:
        return f"{rows_per_s / 1e6:.2f}M"
    if rows_per_s >= 1e3:
        return f"{rows_per_s / 1e3:.1f}k"
    return f"{rows_per_s:.0f}"


def verdict(ok: bool, target: str) -> str:
    return f"{'PASS' if ok else 'MISS'} ({target})"


def print_throughput(results: Sequence[Throughput], dim: int) -> None:
    print(f"\n## Throughput, rows/s ({dim}-dim random unit keys, binary labels)\n")
    header = ["memory", "entries", "MB", "fill s"]
    header += [f"add b={b}" for b in BATCHES] + [f"estimate b={b}" for b in BATCHES]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in results:
        cells = [r.kind, f"{r.entries:,}", f"{r.nbytes / 2**20:.1f}", f"{r.fill_s:.2f}"]
        cells += [rate(r.add[b]) for b in BATCHES] + [rate(r.estimate[b]) for b in BATCHES]
        print("| " + " | ".join(cells) + " |")


def ratio_rows(results: Sequence[Throughput]) -> list[list[str]]:
    largest = max(r.entries for r in results)
    exact = next(r for r in results if r.kind == "exact" and r.entries == largest)
    sketch = next(r for r in results if r.kind == "sketch" and r.entries == largest)
    note = "" if largest == RATIO_SIZE else f" (target is set at {RATIO_SIZE:,})"
    rows = []
    for batch in BATCHES:
        ratio = sketch.estimate[batch] / exact.estimate[batch]
        rows.append(
            [
                f"sketch/exact estimate speed, {largest:,} entries, batch {batch}{note}",
                f"{ratio:,.0f}x",
                verdict(ratio >= TARGET_RATIO, f">= {TARGET_RATIO:.0f}x"),
            ]
        )
    return rows


def print_overhead(overhead: Overhead) -> list[list[str]]:
    print(
        f"\n## Compensation overhead: DeepFM, 16 features, hidden {overhead.hidden}, {overhead.key_dim}-dim keys, "
        f"batch {OVERHEAD_BATCH}, {overhead.entries:,}-entry memories (medians)\n"
    )
    print("| path | wall us per batch | over forward | CPU us per batch | over forward (CPU) |")
    print("|---|---|---|---|---|")
    forward = overhead.forward
    print(f"| forward (predict_proba) | {forward.wall_s * 1e6:.0f} | | {forward.cpu_s * 1e6:.0f} | |")
    # CPU time is the steadier measure on a shared machine, but only single-threaded (module doc).
    use_cpu = torch.get_num_threads() == 1
    clock = "CPU time" if use_cpu else "wall time"
    rows = []
    for kind, value in overhead.compensated.items():
        extra_wall, extra_cpu = value.wall_s / forward.wall_s - 1, value.cpu_s / forward.cpu_s - 1
        print(
            f"| forward + keys + {kind} estimate + compensate | {value.wall_s * 1e6:.0f} | {extra_wall:+.0%} "
            f"| {value.cpu_s * 1e6:.0f} | {extra_cpu:+.0%} |"
        )
        extra = extra_cpu if use_cpu else extra_wall
        rows.append(
            [
                f"compensation overhead, {kind} memory, {overhead.entries:,} entries, batch {OVERHEAD_BATCH} ({clock})",
                f"{extra:+.0%}",
                verdict(extra <= TARGET_OVERHEAD, f"<= {TARGET_OVERHEAD:.0%}"),
            ]
        )
    if overhead.by_size:
        print(f"\n### Sketch shape vs overhead (same model, memories and rounds; {clock})\n")
        print("| sketch (tables x bits, read) | MB | us per batch | over forward |")
        print("|---|---|---|---|")
        base = forward.cpu_s if use_cpu else forward.wall_s
        for size, (value, nbytes) in overhead.by_size.items():
            spent = value.cpu_s if use_cpu else value.wall_s
            print(f"| {size.label} | {nbytes / 2**20:.1f} | {spent * 1e6:.0f} | {spent / base - 1:+.0%} |")
    parts = ", ".join(
        f"{name} {value.wall_s * 1e6:.0f} us ({value.cpu_s * 1e6:.0f} us CPU)"
        for name, value in overhead.sketch_parts.items()
    )
    print(f"\nsketch path by step: {parts}")
    print(
        f"1-minute load average around the timed rounds: {overhead.load[0]:.2f} -> {overhead.load[1]:.2f} "
        f"({os.cpu_count()} CPUs)"
    )
    return rows


def print_targets(rows: Sequence[Sequence[str]]) -> None:
    print("\n## Targets\n")
    print("| target | measured | result |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


# --- entry point ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="memory sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=64, help="key dimension of the throughput runs")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each timed loop")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--overhead-entries", type=int, default=100_000, help="rows in the overhead memories")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the overhead timings (medians)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--hidden",
        type=lambda text: [int(v) for v in text.split(",")],
        default=list(OVERHEAD_HIDDEN),
        help="DeepFM hidden layers of the overhead model, e.g. 400,400,400 (the DeepFM paper's size)",
    )
    parser.add_argument(
        "--sketch-sizes",
        default=DEFAULT_SKETCH_SIZES,
        help="sketch shapes of the overhead-by-shape table, TABLESxBITS[:plain], comma-separated ('' skips it)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short loops: a smoke run")
    args = parser.parse_args(argv)
    try:
        args.sketch_sizes = parse_sketch_sizes(args.sketch_sizes)
    except ValueError as error:
        parser.error(f"--sketch-sizes: {error}")
    try:
        args.sizes = sorted({int(size) for size in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if args.quick:
        args.sizes, args.seconds = list(QUICK_SIZES), QUICK_SECONDS
        args.overhead_entries, args.rounds = QUICK_OVERHEAD_ENTRIES, 1
    if min(args.sizes) < 1 or args.dim < 1 or args.seconds <= 0 or args.overhead_entries < 1 or args.rounds < 1:
        parser.error("sizes, --dim, --seconds, --overhead-entries and --rounds must be positive")
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    previous_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        threads = f"{torch.get_num_threads()} ({'--threads ' + str(args.threads) if args.threads else 'torch default'})"
        print(
            f"# Memory benchmark: torch {torch.__version__}, {platform.machine()} with {os.cpu_count()} CPUs, "
            f"torch threads {threads}, ~{args.seconds:g} s per measurement{', QUICK' if args.quick else ''}",
            flush=True,
        )
        results = []
        for size in args.sizes:
            for kind in ("exact", "sketch"):
                print(f"measuring {kind} at {size:,} entries", file=sys.stderr, flush=True)
                results.append(measure_throughput(kind, size, args.dim, args.seconds, args.seed))
        print_throughput(results, args.dim)
        print(f"measuring compensation overhead ({args.rounds} rounds)", file=sys.stderr, flush=True)
        overhead = measure_overhead(
            args.overhead_entries, args.seconds, args.rounds, args.seed, args.hidden, args.sketch_sizes
        )
        targets = ratio_rows(results) + print_overhead(overhead)
        print_targets(targets)
        return 0
    finally:
        torch.set_num_threads(previous_threads)


if __name__ == "__main__":
    sys.exit(main())
