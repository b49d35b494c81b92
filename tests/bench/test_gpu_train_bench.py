"""The GPU training check on the CPU: the script as users run it, without Django or SciPy, and the
code its CUDA path runs (the engine's ``synchronize`` timing hook) exercised with a CPU stand-in."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from adaptive.ml.architectures import build_model
from adaptive.ml.preprocessing import InputSpec, TabularBatch
from adaptive.ml.training import TrainConfig, continual_train

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_train.py"


class CountingSynchronize:
    """Stands in for ``torch.cuda.synchronize`` on the CPU: counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the file itself. dataclasses look their
    # module up in sys.modules, so it is registered there for the length of the test.
    spec = importlib.util.spec_from_file_location("bench_gpu_train", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def run_script(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(SCRIPT), *args]
    if prelude:
        runner = f"{prelude}; import runpy, sys; sys.argv = {[str(SCRIPT), *args]!r}; "
        runner += f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')"
        command = [sys.executable, "-c", runner]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)


def test_cpu_run_prints_samples_per_second_and_the_time_split(tmp_path: Path) -> None:
    figures_path = tmp_path / "figures.json"

    completed = run_script("--rows", "4000", "--epochs", "1", "--devices", "cpu", "--json", str(figures_path))

    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "gpu_train: 4,000 events (2,000 old, 2,000 new), 12 numeric + 4 categorical features" in out
    assert "initial version: cpu, 1,800 rows x 1 epochs" in out
    assert "== cpu (" in out
    assert "  epoch 1/1: train loss " in out
    assert "  rows: 2,800 trained (1,800 new + 1,000 replay), 200 validation" in out
    samples = re.search(r"^  samples/s: ([\d,]+)$", out, re.MULTILINE)
    assert samples is not None and int(samples.group(1).replace(",", "")) > 0
    assert re.search(r"^  epochs: 1 \(best 1\), val AUC 0\.\d{4}, val accuracy 0\.\d{4}$", out, re.MULTILINE)
    assert re.search(r"^  time: data/transfer [\d.]+% .* compute [\d.]+% .*\[CPU, exact\]$", out, re.MULTILINE)
    assert out.rstrip().endswith("cuda/cpu samples/s: n/a (needs a CUDA run and a CPU run)")
    figures = json.loads(figures_path.read_text())
    (run,) = figures["runs"]
    assert run["device"] == "cpu" and run["epochs"] == 1 and run["n_train"] == 2800
    assert run["samples_per_second"] == pytest.approx(2800 / (run["seconds_data"] + run["seconds_compute"]))
    assert figures["cuda_cpu_samples_per_second"] is None
    assert figures["retrain_config"]["distillation"] == "focal"


def test_script_needs_neither_django_nor_scipy() -> None:
    # A GPU host has PyTorch and NumPy but maybe nothing else of requirements.txt: a None entry in
    # sys.modules makes any import of these packages fail, as if they were not installed.
    blocked = ("django", "scipy", "pandas", "river", "safetensors")
    prelude = "import sys; " + "; ".join(f"sys.modules[{name!r}] = None" for name in blocked)

    completed = run_script("--rows", "3000", "--epochs", "1", "--devices", "cuda,cpu", prelude=prelude)

    assert completed.returncode == 0, completed.stderr
    if not torch.cuda.is_available():
        assert "== cuda: skipped: torch.cuda.is_available() is False" in completed.stdout
    assert "== cpu (" in completed.stdout


def tiny_data(n: int, seed: int) -> tuple[TabularBatch, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, 3, generator=generator)
    categorical = torch.randint(0, 4, (n, 1), generator=generator)
    labels = (numeric[:, 0] - numeric[:, 1] + 0.5 * categorical[:, 0] > 0.7).float()
    return TabularBatch(numeric, categorical), labels


def test_synchronize_hook_is_called_around_every_section_and_changes_no_result() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", {"hidden": [8]}, InputSpec(n_numeric=3, cardinalities=(4,)), 1)
    config = TrainConfig(epochs=2, batch_size=32, distillation="focal", patience=None, device="cpu")
    synchronize = CountingSynchronize()

    plain = continual_train(model, tiny_data(200, 1), tiny_data(100, 2), config)
    timed = continual_train(model, tiny_data(200, 1), tiny_data(100, 2), config, synchronize=synchronize)

    steps = 2 * -(-timed.n_train // 32)
    # Four readings per step (data and compute, each opened and closed), and a few per round/epoch.
    assert synchronize.calls >= 4 * steps
    for key, value in plain.state_dict.items():
        assert torch.equal(value, timed.state_dict[key]), key
    assert [p["train_loss"] for p in plain.curve] == [p["train_loss"] for p in timed.curve]
    assert timed.seconds_data > 0 and timed.seconds_compute > 0


def test_measure_retrain_runs_the_cuda_timing_path_on_the_cpu(bench: ModuleType) -> None:
    events = bench.synthetic_events(2000, seed=3)
    initial, _ = bench.train_initial(
        bench.ARCHITECTURE,
        {"hidden": [16], "embedding_dim": 4},
        events.spec,
        1,
        events.rows(0, 1000),
        dataclasses.replace(bench.INITIAL, epochs=1, batch_size=128, device="cpu"),
    )
    config = dataclasses.replace(bench.RETRAIN, epochs=2, batch_size=128)
    synchronize = CountingSynchronize()

    run, result = bench.measure_retrain(initial, events, config, torch.device("cpu"), synchronize)

    assert run.synchronized and synchronize.calls > 4 * (result.n_train // 128)
    assert run.epochs == 2 and run.n_train == 900 + 500 and run.n_replay == 500 and run.n_validation == 100
    assert run.samples_per_second == pytest.approx(2 * run.n_train / (run.seconds_data + run.seconds_compute))
    assert 0 < run.data_share < 1
    assert run.seconds_data + run.seconds_compute <= run.seconds_wall
    assert run.val_auc is not None and 0.5 < run.val_auc <= 1.0


def test_synchronizer_is_cuda_synchronize_on_cuda_only(bench: ModuleType) -> None:
    cuda = torch.device("cuda:0")

    hook = bench.synchronizer(cuda)

    assert isinstance(hook, functools.partial)
    assert hook.func is torch.cuda.synchronize and hook.args == (cuda,)
    assert bench.synchronizer(cuda, enabled=False) is None
    assert bench.synchronizer(torch.device("cpu")) is None


def test_ratio_needs_a_cuda_and_a_cpu_run(bench: ModuleType) -> None:
    def run(device: str, samples_per_second: float) -> object:
        return bench.DeviceRun(device, "x", device != "cpu", samples_per_second, 1, 1, None, None, 1, 1, 2, 1, 0, 0)

    assert bench.cuda_cpu_ratio([run("cuda", 900.0), run("cpu", 300.0)]) == pytest.approx(3.0)
    assert bench.cuda_cpu_ratio([run("cpu", 300.0), run("cuda:1", 600.0)]) == pytest.approx(2.0)
    assert bench.cuda_cpu_ratio([run("cpu", 300.0)]) is None


def test_synthetic_events_are_fixed_by_the_seed_and_drift(bench: ModuleType) -> None:
    first, again, other = (bench.synthetic_events(4000, seed) for seed in (0, 0, 1))

    assert torch.equal(first.batch.numeric, again.batch.numeric) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.labels, other.labels)
    assert first.batch.categorical.min() >= 1  # 0 is the unknown bucket
    assert (first.batch.categorical.max(dim=0).values < torch.tensor(first.spec.cardinalities)).all()
    assert 0.25 < first.labels.mean().item() < 0.45
    # Covariate drift: the next-to-last numeric feature's mean moves between the old and new half.
    old, new = first.batch.numeric[:2000, -2].mean(), first.batch.numeric[2000:, -2].mean()
    assert abs((new - old).item()) > 0.5
