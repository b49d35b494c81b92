"""Error memories: reads near and far from written rows, eviction, constant size, save/restore."""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from adaptive.ml.memory import (
    DEFAULT_EXACT_CAPACITY,
    DEFAULT_EXACT_K,
    DEFAULT_SKETCH_BITS,
    DEFAULT_SKETCH_PRIOR,
    DEFAULT_SKETCH_TABLES,
    DEFAULT_TAU,
    ErrorMemory,
    ExactMemory,
    MemoryConfigError,
    MemoryStateError,
    SketchMemory,
    make_memory,
    memory_from_state_dict,
)
from adaptive.ml.memory import exact as exact_module
from adaptive.ml.memory import sketch as sketch_module

DIM = 8
KINDS = ["exact", "sketch"]
# Small enough to fill and wrap in a few rows; the sketch's 4 x 16 buckets keep a cluster together.
# No forgetting unless a test asks for it, so that plain sums give exact expected values.
SMALL_PARAMS: dict[str, dict[str, Any]] = {
    "exact": {"capacity": 64, "k": 8, "tau": 0.1},
    "sketch": {"n_tables": 4, "n_bits": 4, "tau": 0.1, "seed": 0, "half_life": None},
}


def small_memory(kind: str, n_outputs: int = 1, **params: Any) -> ErrorMemory:
    return make_memory(kind, DIM, n_outputs, **{**SMALL_PARAMS[kind], **params})


def unit_keys(n: int, seed: int = 0, dim: int = DIM) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, dim, generator=generator), dim=1)


def cluster(center: torch.Tensor, n: int, spread: float = 0.05, seed: int = 1) -> torch.Tensor:
    """n unit keys within a few degrees of ``center``."""
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(center + spread * torch.randn(n, center.shape[0], generator=generator), dim=1)


def random_rows(n: int, n_outputs: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keys, labels and base scores for a binary (n_outputs 1) or multiclass memory."""
    generator = torch.Generator().manual_seed(seed + 100)
    keys = unit_keys(n, seed)
    if n_outputs == 1:
        return keys, torch.randint(0, 2, (n,), generator=generator), torch.rand(n, generator=generator)
    labels = torch.randint(0, n_outputs, (n,), generator=generator)
    return keys, labels, torch.softmax(torch.randn(n, n_outputs, generator=generator), dim=1)


def assert_same_readout(left: ErrorMemory, right: ErrorMemory, queries: torch.Tensor) -> None:
    a, b = left.estimate(queries), right.estimate(queries)
    assert torch.equal(a.y_bar, b.y_bar)
    assert torch.equal(a.p_bar, b.p_bar)
    assert torch.equal(a.support, b.support)


# --- reading --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_empty_memory_reads_zero_support(kind: str, n_outputs: int) -> None:
    readout = small_memory(kind, n_outputs).estimate(unit_keys(5))

    expected_shape = (5,) if n_outputs == 1 else (5, n_outputs)
    assert readout.y_bar.shape == readout.p_bar.shape == expected_shape
    assert torch.equal(readout.support, torch.zeros(5))
    assert not readout.y_bar.any() and not readout.p_bar.any()


@pytest.mark.parametrize("kind", KINDS)
def test_query_near_written_rows_reads_their_labels_and_scores(kind: str) -> None:
    center = unit_keys(1, seed=7)[0]
    memory = small_memory(kind)
    memory.add(cluster(center, 20), torch.ones(20), torch.full((20,), 0.2))

    readout = memory.estimate(cluster(center, 3, seed=2))

    assert readout.y_bar.tolist() == pytest.approx([1.0] * 3, abs=1e-5)
    assert readout.p_bar.tolist() == pytest.approx([0.2] * 3, abs=1e-5)
    assert bool((readout.support > 1).all())


@pytest.mark.parametrize("kind", KINDS)
def test_query_far_from_written_rows_gets_no_support(kind: str) -> None:
    center = unit_keys(1, seed=7)[0]
    memory = small_memory(kind)
    memory.add(cluster(center, 20), torch.ones(20), torch.full((20,), 0.2))

    far = memory.estimate(-center.unsqueeze(0))

    # Exact: the nearest rows sit at cosine about -1, kernel mass 20 * exp(-2 / 0.1). Sketch: every
    # projection flips sign, so the opposite key lands in buckets nothing was written to.
    assert float(far.support[0]) < 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_empty_batches_are_accepted(kind: str) -> None:
    memory = small_memory(kind)
    memory.add(*random_rows(0, 1))
    memory.add(*random_rows(10, 1))

    readout = memory.estimate(unit_keys(0))

    assert len(memory) == 10
    assert readout.y_bar.shape == readout.support.shape == (0,)


def test_exact_read_is_softmax_over_top_k_with_kernel_mass_support() -> None:
    memory = ExactMemory(2, 1, capacity=8, k=2, tau=0.5)
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    memory.add(keys, torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.9, 0.3, 0.5]))
    query = F.normalize(torch.tensor([[1.0, 0.5]]), dim=1)

    readout = memory.estimate(query)

    # The two nearest are rows 0 and 1 (row 2 is behind the query); s = q . x.
    s = torch.tensor([float(query[0, 0]), float(query[0, 1])])
    a = torch.softmax(s / 0.5, dim=0)
    assert float(readout.y_bar[0]) == pytest.approx(float(a[0] * 1.0 + a[1] * 0.0), abs=1e-6)
    assert float(readout.p_bar[0]) == pytest.approx(float(a[0] * 0.9 + a[1] * 0.3), abs=1e-6)
    assert float(readout.support[0]) == pytest.approx(float(torch.exp((s - 1) / 0.5).sum()), abs=1e-6)


def test_exact_chunked_scan_finds_the_same_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = small_memory("exact", capacity=200, k=5)
    memory.add(*random_rows(200, 1))
    queries = unit_keys(6, seed=3)
    whole = memory.estimate(queries)

    # Query groups of 4 and 2, blocks of 7 and 15 rows: many chunks, each merged into the top 5.
    monkeypatch.setattr(exact_module, "EXACT_CHUNK_ELEMENTS", 30)
    monkeypatch.setattr(exact_module, "EXACT_QUERY_GROUP", 4)
    chunked = memory.estimate(queries)

    torch.testing.assert_close(chunked.y_bar, whole.y_bar)
    torch.testing.assert_close(chunked.p_bar, whole.p_bar)
    torch.testing.assert_close(chunked.support, whole.support)


@pytest.mark.parametrize("kind", KINDS)
def test_multiclass_readout_rows_are_distributions(kind: str) -> None:
    memory = small_memory(kind, n_outputs=4)
    memory.add(*random_rows(50, 4))

    readout = memory.estimate(unit_keys(10, seed=5))

    known = readout.support > 0
    assert bool(known.any())
    torch.testing.assert_close(readout.y_bar[known].sum(dim=1), torch.ones(int(known.sum())))
    torch.testing.assert_close(readout.p_bar[known].sum(dim=1), torch.ones(int(known.sum())))


def test_sketch_first_order_read_follows_the_labels_across_a_bucket() -> None:
    # One bucket per table holds an arc of keys: label 1 on one side of its centre, 0 on the other.
    # The plain read answers the bucket mean (0.5) anywhere in it; the first-order read follows the
    # labels toward either end about as the exact memory's softmax over the same rows does.
    center = unit_keys(1, seed=7)[0]
    direction = unit_keys(1, seed=8)[0]
    side = F.normalize(direction - (direction @ center) * center, dim=0)
    offsets = torch.linspace(-1.0, 1.0, 200)
    keys = F.normalize(center + 0.2 * offsets[:, None] * side, dim=1)
    labels = (offsets > 0).float()
    ends = keys[[10, 189]]  # deep on the 0 side, deep on the 1 side
    plain, first_order = small_memory("sketch", prior=None), small_memory("sketch", prior=1e-3)
    exact = ExactMemory(DIM, 1, capacity=200, k=200, tau=0.1)  # the sketches' tau; every row a neighbour
    for memory in (plain, first_order, exact):
        memory.add(keys, labels, torch.full((200,), 0.5))
    # Precondition: the whole arc and both queries share every table's bucket.
    assert isinstance(first_order, SketchMemory) and first_order.slopes
    assert bool((first_order.bucket_index(keys) == first_order.bucket_index(center[None])).all())

    target = exact.estimate(ends).y_bar
    assert target.tolist() == pytest.approx([0.42, 0.58], abs=0.01)
    assert plain.estimate(ends).y_bar.tolist() == pytest.approx([0.5, 0.5], abs=1e-6)
    torch.testing.assert_close(first_order.estimate(ends).y_bar, target, atol=0.01, rtol=0)  # plain: 0.08 off
    # The base scores are flat (0.5 everywhere), so their first-order term is zero.
    assert first_order.estimate(ends).p_bar.tolist() == pytest.approx([0.5, 0.5], abs=1e-6)


def test_sketch_buckets_are_the_sign_bits_of_the_projections() -> None:
    memory = SketchMemory(DIM, 1, n_tables=3, n_bits=5, seed=4)
    keys = unit_keys(100, seed=9)

    bits = (keys @ memory._planes > 0).view(100, 3, 5).long()
    expected = (bits * 2 ** torch.arange(5)).sum(dim=2) + torch.arange(3) * 32

    assert torch.equal(memory.bucket_index(keys), expected)


# --- size, eviction, forgetting ---------------------------------------------------------------------


def test_exact_memory_evicts_the_oldest_rows_past_capacity() -> None:
    memory = ExactMemory(DIM, 1, capacity=4, k=1, tau=0.1)
    keys = unit_keys(6)
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])

    memory.add(keys[:3], labels[:3], torch.zeros(3))
    memory.add(keys[3:], labels[3:], torch.zeros(3))

    assert len(memory) == 4 and memory.n_added == 6
    # Rows 0 and 1 are gone: their own keys are no longer found at similarity 1.
    assert float(memory.estimate(keys[:2]).support.max()) < 0.99
    assert memory.estimate(keys[2:]).support.tolist() == pytest.approx([1.0] * 4, abs=1e-5)


def test_exact_memory_keeps_the_last_rows_of_a_batch_larger_than_capacity() -> None:
    memory = ExactMemory(DIM, 1, capacity=4, k=1, tau=0.1)
    memory.add(*random_rows(3, 1))
    keys, labels, scores = random_rows(10, 1, seed=1)

    memory.add(keys, labels, scores)

    assert len(memory) == 4
    readout = memory.estimate(keys[-4:])
    assert torch.equal(readout.y_bar, labels[-4:].float())
    assert torch.equal(readout.p_bar, scores[-4:])


def test_exact_memory_size_is_fixed_by_capacity() -> None:
    memory = ExactMemory(DIM, 1, capacity=16, k=4, tau=0.1)
    before = memory.nbytes

    memory.add(*random_rows(40, 1))

    assert memory.nbytes == before == 16 * (DIM + 2) * 4


def test_sketch_size_is_constant_whatever_the_stream_length() -> None:
    memory = small_memory("sketch")
    before = memory.nbytes

    for seed in range(5):
        memory.add(*random_rows(1000, 1, seed=seed))

    assert memory.nbytes == before
    assert len(memory) == 5000
    assert isinstance(memory, SketchMemory) and memory.n_buckets == 4 * 2**4


def test_sketch_half_life_lets_recent_rows_outweigh_old_ones() -> None:
    center = unit_keys(1, seed=7)[0]
    keys = cluster(center, 1).expand(200, DIM)
    labels = torch.cat([torch.zeros(100), torch.ones(100)])
    forgetting = small_memory("sketch", half_life=10.0)
    plain = small_memory("sketch")

    for memory in (forgetting, plain):
        memory.add(keys, labels, torch.full((200,), 0.5))

    assert float(plain.estimate(keys[:1]).y_bar[0]) == pytest.approx(0.5, abs=1e-6)
    remembered = forgetting.estimate(keys[:1])
    # The 100 zero-labeled rows are 10 half-lives old: weight 2^-10 next to the ones.
    assert float(remembered.y_bar[0]) == pytest.approx(1.0, abs=2e-3)
    # Decayed count: sum over ages of 2^(-age / 10), about 14.9 for a long stream.
    decay = 2 ** (-1 / 10)
    expected = (1 - decay**200) / (1 - decay)
    assert float(remembered.support[0]) == pytest.approx(expected, rel=1e-4)


def test_sketch_half_life_survives_weights_past_the_rescale_point() -> None:
    # A half-life of 1 row needs a rescale every 66 rows (2^66 > MAX_ROW_WEIGHT).
    memory = small_memory("sketch", half_life=1.0)
    key = unit_keys(1)
    for step in range(6):
        memory.add(key.expand(100, DIM), torch.full((100,), float(step % 2)), torch.full((100,), 0.5))

    readout = memory.estimate(key)

    assert bool(torch.isfinite(readout.support).all())
    assert float(readout.y_bar[0]) == pytest.approx(1.0, abs=1e-4)
    assert float(readout.support[0]) == pytest.approx(2.0, rel=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_clear_forgets_every_row(kind: str) -> None:
    memory = small_memory(kind)
    memory.add(*random_rows(30, 1))

    memory.clear()

    assert len(memory) == 0
    assert torch.equal(memory.estimate(unit_keys(4)).support, torch.zeros(4))


# --- save and restore ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_round_trip_through_safetensors_gives_identical_estimates(kind: str, n_outputs: int) -> None:
    memory = small_memory(kind, n_outputs)
    memory.add(*random_rows(100, n_outputs))  # the exact memory (capacity 64) has wrapped

    restored = memory_from_state_dict(safetensors_load(safetensors_save(memory.state_dict())))

    assert restored.config() == memory.config()
    assert len(restored) == len(memory)
    queries = unit_keys(20, seed=11)
    assert_same_readout(memory, restored, queries)
    # And they keep evolving alike: the same eviction order, the same bucket sums.
    for target in (memory, restored):
        target.add(*random_rows(30, n_outputs, seed=2))
    assert_same_readout(memory, restored, queries)


def test_round_trip_keeps_sketch_forgetting_state() -> None:
    memory = small_memory("sketch", half_life=25.0)
    memory.add(*random_rows(100, 1))
    restored = memory_from_state_dict(safetensors_load(safetensors_save(memory.state_dict())))
    for target in (memory, restored):
        target.add(*random_rows(30, 1, seed=2))

    queries = unit_keys(20, seed=11)
    # Saving rescales the sums to "newest row = 1": equal up to float rounding, not bit for bit.
    before, after = memory.estimate(queries), restored.estimate(queries)
    torch.testing.assert_close(after.y_bar, before.y_bar)
    torch.testing.assert_close(after.support, before.support)


def test_sketch_saved_without_a_prior_loads_with_the_plain_read() -> None:
    # Memories saved before the prior existed have no config.prior and narrower sums: they load as
    # plain-read sketches and answer exactly as before.
    memory = small_memory("sketch", prior=None)
    memory.add(*random_rows(200, 1))
    state = memory.state_dict()
    assert "config.prior" not in state and state["sums"].shape == (4 * 2**4, 1 + 2 + DIM)

    restored = memory_from_state_dict(safetensors_load(safetensors_save(state)))

    assert isinstance(restored, SketchMemory) and restored.prior is None and not restored.slopes
    assert_same_readout(memory, restored, unit_keys(20, seed=11))
    with pytest.raises(MemoryStateError, match="configured"):
        small_memory("sketch").load_state_dict(state)  # a default (prior 20) sketch refuses it


def test_state_dict_holds_only_plain_tensors_and_the_config() -> None:
    state = small_memory("sketch").state_dict()

    assert all(isinstance(value, torch.Tensor) for value in state.values())
    assert bytes(state["config.kind"].tolist()) == b"sketch"
    assert int(state["config.n_bits"]) == 4
    assert "config.half_life" not in state  # None is stored as absent


def test_load_state_dict_rejects_another_config() -> None:
    state = small_memory("exact").state_dict()

    with pytest.raises(MemoryStateError, match="configured"):
        small_memory("exact", capacity=32).load_state_dict(state)
    with pytest.raises(MemoryStateError, match="configured"):
        small_memory("sketch").load_state_dict(state)


def test_load_state_dict_rejects_data_that_does_not_fit() -> None:
    memory = small_memory("exact")
    memory.add(*random_rows(10, 1))
    state = memory.state_dict()

    with pytest.raises(MemoryStateError, match="targets"):
        small_memory("exact").load_state_dict({**state, "targets": torch.zeros(9, 1)})
    with pytest.raises(MemoryStateError, match="cursor"):
        small_memory("exact").load_state_dict({**state, "cursor": torch.tensor(3)})
    with pytest.raises(MemoryStateError, match="keys: missing"):
        small_memory("exact").load_state_dict({k: v for k, v in state.items() if k != "keys"})
    with pytest.raises(MemoryStateError, match="NaN"):
        small_memory("exact").load_state_dict({**state, "keys": torch.full((10, DIM), math.nan)})


# --- determinism and validation ------------------------------------------------------------------


def test_sketch_is_deterministic_for_a_seed() -> None:
    rows = random_rows(300, 1)
    first, second, other = small_memory("sketch"), small_memory("sketch"), small_memory("sketch", seed=1)
    for memory in (first, second, other):
        memory.add(*rows)

    a, b = first.state_dict(), second.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not torch.equal(a["planes"], other.state_dict()["planes"])


def test_make_memory_fills_in_the_defaults() -> None:
    exact = make_memory("exact", DIM, 1)
    sketch = make_memory("sketch", DIM, 1)

    assert exact.config() == {
        "kind": "exact",
        "dim": DIM,
        "n_outputs": 1,
        "capacity": DEFAULT_EXACT_CAPACITY,
        "k": DEFAULT_EXACT_K,
        "tau": DEFAULT_TAU,
    }
    assert sketch.params()["n_tables"] == DEFAULT_SKETCH_TABLES
    assert sketch.params()["n_bits"] == DEFAULT_SKETCH_BITS
    assert sketch.params()["prior"] == DEFAULT_SKETCH_PRIOR
    # Binary sketches keep the first-order sums; multiclass ones only weigh buckets by trust.
    assert isinstance(sketch, SketchMemory) and sketch.slopes
    assert not SketchMemory(DIM, 3).slopes


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("lsh", {}, "unknown memory kind"),
        ("exact", {"n_bits": 4}, "unknown exact memory params: n_bits"),
        ("exact", {"k": 0}, "k must be an integer"),
        ("exact", {"k": True}, "k must be an integer"),
        ("exact", {"capacity": 2.5}, "capacity must be an integer"),
        ("exact", {"tau": 0.0}, "tau must be in"),
        ("exact", {"tau": math.nan}, "tau must be a finite number"),
        ("sketch", {"n_bits": 0}, "n_bits must be an integer"),
        ("sketch", {"n_tables": 64, "n_bits": 20}, "buckets is above the limit"),
        ("sketch", {"half_life": 0.5}, "half_life must be in"),
        ("sketch", {"seed": -1}, "seed must be an integer"),
        ("sketch", {"prior": 0.0}, "prior must be in"),
    ],
)
def test_make_memory_rejects_bad_params(kind: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(MemoryConfigError, match=message):
        make_memory(kind, DIM, 1, **params)


def test_memory_rejects_a_zero_dimension() -> None:
    with pytest.raises(MemoryConfigError, match="dim must be"):
        make_memory("exact", 0, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_add_rejects_rows_that_would_poison_the_memory(kind: str) -> None:
    binary, multiclass = small_memory(kind), small_memory(kind, n_outputs=3)
    keys = unit_keys(2)

    with pytest.raises(ValueError, match="keys must have shape"):
        binary.add(keys[:, :4], torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="keys must be finite"):
        binary.add(torch.full((2, DIM), math.inf), torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="base_scores must be probabilities"):
        binary.add(keys, torch.ones(2), torch.tensor([0.5, math.nan]))
    with pytest.raises(ValueError, match="binary labels"):
        binary.add(keys, torch.tensor([0.0, 2.0]), torch.ones(2))
    with pytest.raises(ValueError, match=r"class indexes in 0\.\.2"):
        multiclass.add(keys, torch.tensor([0, 3]), torch.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match="integer class indexes"):
        multiclass.add(keys, torch.tensor([0.0, 1.0]), torch.full((2, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"base_scores must have shape \[2, 3\]"):
        multiclass.add(keys, torch.tensor([0, 1]), torch.ones(2))
    assert len(binary) == len(multiclass) == 0


# --- the fast reads against straightforward references ------------------------------------------------


def reference_sketch_read(memory: SketchMemory, queries: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The sketch read written out plainly, in float64, one query and one table at a time.

    From the saved state (sums with the newest row at weight 1): each table hashes the query by the
    signs of its projections, the used buckets among the K get weights proportional to
    exp(cos(q, centroid) / tau), times the trust n / (n + prior) with a prior, and y_bar, p_bar,
    support are the weighted mean label, mean score and row count. With a prior, a binary bucket's
    mean label is first moved by trust * q . cov(k, y) / tau and clamped to [0, 1] (the same for
    the score), with cov(k, y) = mean(y k) - mean(y) mean(k) over the bucket's rows.
    """
    state = memory.state_dict()
    planes, sums = state["planes"].double(), state["sums"]
    k, bits, w, d = memory.n_tables, memory.n_bits, memory.width, memory.dim
    y_rows, p_rows, supports = [], [], []
    for query in queries.double():
        logits, trusts, means, counts = [], [], [], []
        for table in range(k):
            projections = query @ planes[:, table * bits : (table + 1) * bits]
            bucket = table * 2**bits + sum(2**bit for bit in range(bits) if projections[bit] > 0)
            row = sums[bucket]
            count = float(row[0])
            if count == 0:
                continue
            key_sum = row[1 + 2 * w : 1 + 2 * w + d]
            logits.append(float(query @ key_sum / key_sum.norm()) / memory.tau)
            mean = row[1 : 1 + 2 * w] / count
            trust = 1.0 if memory.prior is None else count / (count + memory.prior)
            if memory.slopes:
                y_key, p_key = row[1 + 2 * w + d : 1 + 2 * w + 2 * d], row[1 + 2 * w + 2 * d :]
                mean_key = key_sum / count
                covariances = torch.stack([y_key / count - mean[0] * mean_key, p_key / count - mean[1] * mean_key])
                mean = (mean + trust * (covariances @ query) / memory.tau).clamp(0.0, 1.0)
            trusts.append(trust)
            means.append(mean)
            counts.append(count)
        if not logits:
            y_rows.append(torch.zeros(w, dtype=torch.float64))
            p_rows.append(torch.zeros(w, dtype=torch.float64))
            supports.append(0.0)
            continue
        weights = torch.softmax(torch.tensor(logits, dtype=torch.float64), dim=0) * torch.tensor(trusts)
        weights = weights / weights.sum()
        blended = sum(weight * mean for weight, mean in zip(weights, means, strict=True))
        y_rows.append(blended[:w])
        p_rows.append(blended[w:])
        supports.append(float(sum(weight * count for weight, count in zip(weights, counts, strict=True))))
    y_bar, p_bar = torch.stack(y_rows).float(), torch.stack(p_rows).float()
    if w == 1:
        y_bar, p_bar = y_bar.squeeze(1), p_bar.squeeze(1)
    return y_bar, p_bar, torch.tensor(supports, dtype=torch.float32)


@pytest.mark.parametrize("numpy_reads", [True, False])
@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("half_life", [None, 40.0])
@pytest.mark.parametrize("prior", [None, 3.0])
def test_sketch_read_equals_a_straightforward_reference(
    n_outputs: int, half_life: float | None, numpy_reads: bool, prior: float | None
) -> None:
    # 6 tables of 1024 buckets for 450 rows: most queries meet both used and empty buckets.
    memory = SketchMemory(DIM, n_outputs, n_tables=6, n_bits=10, tau=0.2, seed=3, half_life=half_life, prior=prior)
    memory._numpy_reads = numpy_reads  # False: the torch read used on accelerators
    for seed in range(3):
        memory.add(*random_rows(150, n_outputs, seed=seed))
    stored = random_rows(10, n_outputs, seed=0)[0]
    # Random queries, copies of stored keys, and the opposite of one of them.
    queries = torch.cat([unit_keys(60, seed=21), stored, -stored[:1]])

    readout = memory.estimate(queries)
    y_bar, p_bar, support = reference_sketch_read(memory, queries)

    torch.testing.assert_close(readout.y_bar, y_bar, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(readout.p_bar, p_bar, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(readout.support, support, rtol=1e-5, atol=1e-5)


def test_sketch_reads_large_batches_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = small_memory("sketch", n_outputs=3)
    memory.add(*random_rows(200, 3))
    queries = unit_keys(50, seed=4)
    whole = memory.estimate(queries)

    monkeypatch.setattr(sketch_module, "SKETCH_READ_ELEMENTS", 4 * (DIM + 1) * 7)  # pieces of 7 rows
    pieces = memory.estimate(queries)

    torch.testing.assert_close(pieces.y_bar, whole.y_bar)
    torch.testing.assert_close(pieces.support, whole.support)


def reference_exact_read(memory: ExactMemory, queries: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The exact read written out plainly: full similarity matrix, full sort, softmax over the top k."""
    state = memory.state_dict()
    keys, targets, scores = state["keys"].double(), state["targets"].double(), state["scores"].double()
    similarities = queries.double() @ keys.T
    top, rows = similarities.sort(dim=1, descending=True)
    top, rows = top[:, : memory.k], rows[:, : memory.k]
    weights = torch.softmax(top / memory.tau, dim=1).unsqueeze(2)
    y_bar, p_bar = (weights * targets[rows]).sum(dim=1), (weights * scores[rows]).sum(dim=1)
    support = torch.exp((top - 1) / memory.tau).sum(dim=1)
    if memory.width == 1:
        y_bar, p_bar = y_bar.squeeze(1), p_bar.squeeze(1)
    return y_bar.float(), p_bar.float(), support.float()


@pytest.mark.parametrize("numpy_reads", [True, False])
@pytest.mark.parametrize("chunk_elements", [None, 40 * 200, 40 * 37])
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_exact_read_equals_a_straightforward_reference(
    monkeypatch: pytest.MonkeyPatch, chunk_elements: int | None, n_outputs: int, numpy_reads: bool
) -> None:
    memory = ExactMemory(DIM, n_outputs, capacity=700, k=5, tau=0.2)
    memory._numpy_reads = numpy_reads  # False: the torch read used on accelerators
    for seed in range(3):
        memory.add(*random_rows(300, n_outputs, seed=seed))  # wraps: 900 rows into 700
    queries = torch.cat([unit_keys(40, seed=22), random_rows(5, n_outputs, seed=2)[0]])
    if chunk_elements is not None:
        # Blocks of 200 and 37 columns at 40 queries a group, several chunks merged: 200 columns go
        # through the two-level selection (33 groups of 6, 2 columns left over), 37 through one step.
        monkeypatch.setattr(exact_module, "EXACT_CHUNK_ELEMENTS", chunk_elements)
        monkeypatch.setattr(exact_module, "EXACT_QUERY_GROUP", 40)
        monkeypatch.setattr(exact_module, "EXACT_MIN_GROUPED_ELEMENTS", 0)

    readout = memory.estimate(queries)
    y_bar, p_bar, support = reference_exact_read(memory, queries)

    torch.testing.assert_close(readout.y_bar, y_bar, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(readout.p_bar, p_bar, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(readout.support, support, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("width", "k"), [(5, 8), (40, 8), (1000, 7), (1003, 10), (4099, 100), (300, 1)])
def test_block_top_k_returns_the_k_largest_values_and_their_columns(
    monkeypatch: pytest.MonkeyPatch, width: int, k: int
) -> None:
    # Small blocks take the two-level path too (all but the first two widths, see _block_top_k).
    monkeypatch.setattr(exact_module, "EXACT_MIN_GROUPED_ELEMENTS", 0)
    generator = torch.Generator().manual_seed(width)
    block: npt.NDArray[np.float32] = torch.randn(6, width, generator=generator).numpy()
    # Ties too: a coarse copy has many equal values, and any of a tie may be picked. It stays float32
    # (numpy keeps an array's dtype against a Python scalar), which numpy's stubs cannot tell.
    coarse = cast("npt.NDArray[np.float32]", (block * 4).round() / 4)
    for values in (block, coarse):
        top, columns = exact_module._block_top_k(values, k)

        expected = torch.from_numpy(values).topk(min(k, width), dim=1).values
        assert torch.equal(torch.from_numpy(top).sort(dim=1, descending=True).values, expected)
        assert (values[[[row] for row in range(6)], columns] == top).all()
        assert all(len(set(row.tolist())) == min(k, width) for row in columns)  # no column twice
