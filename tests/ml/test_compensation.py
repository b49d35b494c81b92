"""Compensation: the ReLoop2 blend, shrinkage, keys from a model and the Compensator loop."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from adaptive.ml.architectures import TabularModel, build_model
from adaptive.ml.compensation import (
    CompensationConfig,
    Compensator,
    compensate,
    extract_keys,
    fit_key_mean,
    support_weight,
)
from adaptive.ml.memory import ErrorMemory, Readout, make_memory
from tests.ml.samples import SPEC, random_batch

KINDS = ["exact", "sketch"]
SMALL_PARAMS: dict[str, dict[str, Any]] = {
    "exact": {"capacity": 256, "k": 16, "tau": 0.1},
    "sketch": {"n_tables": 4, "n_bits": 4, "tau": 0.1, "seed": 0},
}


def make_model(n_outputs: int = 1, name: str = "deepfm") -> TabularModel:
    torch.manual_seed(0)
    return build_model(name, {"hidden": [16, 8]}, SPEC, n_outputs).eval()


def small_memory(kind: str, dim: int, n_outputs: int = 1) -> ErrorMemory:
    return make_memory(kind, dim, n_outputs, **SMALL_PARAMS[kind])


def readout(y_bar: list[float], p_bar: list[float], support: list[float]) -> Readout:
    return Readout(torch.tensor(y_bar), torch.tensor(p_bar), torch.tensor(support))


# --- the blend ---------------------------------------------------------------------------------------


def test_compensate_follows_the_papers_formula_with_shrinkage() -> None:
    config = CompensationConfig(lam=0.5, gamma=0.5, shrink=5.0)

    p_comp = compensate(torch.tensor([0.2]), readout([1.0], [0.5], [5.0]), config)

    # err = 0.5 * (1 - 0.2) + 0.5 * (1 - 0.5) = 0.65; w = 5 / (5 + 5) = 0.5; 0.2 + 0.5 * 0.5 * 0.65
    assert float(p_comp[0]) == pytest.approx(0.3625, abs=1e-6)


def test_gamma_one_without_shrinkage_is_the_blend_toward_y_bar() -> None:
    p_base = torch.tensor([0.1, 0.6, 0.9])
    memory_says = readout([1.0, 0.0, 0.5], [0.3, 0.3, 0.3], [10.0, 10.0, 10.0])

    p_comp = compensate(p_base, memory_says, CompensationConfig(lam=0.7, gamma=1.0, shrink=0.0))

    torch.testing.assert_close(p_comp, 0.3 * p_base + 0.7 * memory_says.y_bar)


def test_empty_readout_leaves_scores_unchanged_even_without_shrinkage() -> None:
    p_base = torch.tensor([0.1, 0.6, 0.9])

    p_comp = compensate(p_base, readout([0.0] * 3, [0.0] * 3, [0.0] * 3), CompensationConfig(lam=1.0, shrink=0.0))

    assert torch.equal(p_comp, p_base)


def test_low_support_is_shrunk_toward_no_correction() -> None:
    p_base = torch.tensor([0.2, 0.2, 0.2])
    memory_says = readout([1.0, 1.0, 1.0], [0.2, 0.2, 0.2], [0.5, 5.0, 500.0])

    moved = compensate(p_base, memory_says, CompensationConfig(lam=0.5, shrink=5.0)) - p_base

    assert bool((moved[:-1] < moved[1:]).all())
    assert moved.tolist() == pytest.approx([0.4 * w for w in (0.5 / 5.5, 0.5, 500 / 505)], abs=1e-6)


def test_support_weight_is_in_unit_range() -> None:
    support = torch.tensor([0.0, 1.0, 1e6])

    assert support_weight(support, 1.0).tolist() == pytest.approx([0.0, 0.5, 1.0], abs=1e-5)
    assert support_weight(support, 0.0).tolist() == [0.0, 1.0, 1.0]


def test_compensated_scores_are_clamped_to_probabilities() -> None:
    # gamma = 0: err = y_bar - p_bar, which can push a score past 0 or 1.
    config = CompensationConfig(lam=1.0, gamma=0.0, shrink=0.0)

    p_comp = compensate(torch.tensor([0.1, 0.9]), readout([0.0, 1.0], [0.9, 0.1], [3.0, 3.0]), config)

    assert p_comp.tolist() == [0.0, 1.0]


def test_multiclass_scores_stay_distributions() -> None:
    p_base = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    memory_says = Readout(
        y_bar=torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
        p_bar=torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        support=torch.tensor([10.0, 0.0]),
    )

    for gamma in (0.0, 0.5, 1.0):
        p_comp = compensate(p_base, memory_says, CompensationConfig(lam=0.9, gamma=gamma, shrink=1.0))

        assert bool((p_comp >= 0).all())
        torch.testing.assert_close(p_comp.sum(dim=1), torch.ones(2))
        assert torch.equal(p_comp[1], p_base[1])  # no support, no change
        assert float(p_comp[0, 2]) > float(p_base[0, 2])


def test_compensate_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="does not match the readout"):
        compensate(torch.tensor([0.1, 0.2]), readout([0.0], [0.0], [0.0]), CompensationConfig())


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lam": 1.5}, "lam must be in"),
        ({"gamma": -0.1}, "gamma must be in"),
        ({"shrink": -1.0}, "shrink must be in"),
        ({"lam": math.nan}, "lam must be a finite number"),
        ({"lam": True}, "lam must be a finite number"),
    ],
)
def test_config_rejects_bad_values(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CompensationConfig(**params)


def test_config_stores_plain_floats() -> None:
    assert CompensationConfig(lam=1, gamma=0, shrink=2) == CompensationConfig(lam=1.0, gamma=0.0, shrink=2.0)


# --- near and far ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_errors_written_near_a_key_move_predictions_near_it_and_not_far(kind: str) -> None:
    generator = torch.Generator().manual_seed(0)
    center = F.normalize(torch.randn(8, generator=generator), dim=0)
    near = F.normalize(center + 0.05 * torch.randn(30, 8, generator=generator), dim=1)
    memory = small_memory(kind, dim=8)
    # The model said 0.1 and the truth was 1, thirty times around `center`.
    memory.add(near[:20], torch.ones(20), torch.full((20,), 0.1))
    queries = torch.cat([near[20:], -center.unsqueeze(0)])
    p_base = torch.full((11,), 0.1)

    p_comp = compensate(p_base, memory.estimate(queries), CompensationConfig(lam=0.5, shrink=1.0))

    assert bool((p_comp[:10] > 0.4).all())
    assert float(p_comp[10]) == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_errors_elsewhere_leave_zero_error_regions_alone(kind: str) -> None:
    generator = torch.Generator().manual_seed(1)
    center = F.normalize(torch.randn(8, generator=generator), dim=0)
    errors = F.normalize(center + 0.05 * torch.randn(20, 8, generator=generator), dim=1)
    elsewhere = F.normalize(-center + 0.05 * torch.randn(30, 8, generator=generator), dim=1)
    labels = torch.randint(0, 2, (30,), generator=generator).float()
    memory = small_memory(kind, dim=8)
    memory.add(errors, torch.ones(20), torch.zeros(20))
    memory.add(elsewhere, labels, labels)  # the model was right there
    config = CompensationConfig(lam=0.9, gamma=0.0, shrink=1.0)

    p_base = torch.full((10,), 0.3)
    p_comp = compensate(p_base, memory.estimate(elsewhere[:10]), config)

    torch.testing.assert_close(p_comp, p_base, atol=1e-6, rtol=0)


# --- keys and the Compensator loop -------------------------------------------------------------------


def test_key_mean_is_the_mean_of_the_last_hidden_layer_in_any_chunking() -> None:
    model = make_model()
    batch = random_batch(SPEC, n=50, seed=3)

    mean = fit_key_mean(model, batch)

    with torch.no_grad():
        expected = model.embed(batch).mean(dim=0)
    torch.testing.assert_close(mean, expected)
    torch.testing.assert_close(fit_key_mean(model, batch, batch_size=7), expected)


def test_keys_are_centred_unit_vectors() -> None:
    model = make_model()
    batch = random_batch(SPEC, n=40, seed=4)
    mean = fit_key_mean(model, batch)

    keys = extract_keys(model, batch, mean)

    assert keys.shape == (40, model.hidden_dim)
    torch.testing.assert_close(keys.norm(dim=1), torch.ones(40))
    with torch.no_grad():
        torch.testing.assert_close(keys, F.normalize(model.embed(batch) - mean, dim=1))


def test_key_extraction_uses_eval_mode_and_restores_training_mode() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", {"hidden": [16, 8], "dropout": 0.5}, SPEC, 1).train()
    batch = random_batch(SPEC, n=20, seed=5)

    first, second = fit_key_mean(model, batch), fit_key_mean(model, batch)

    assert torch.equal(first, second)  # dropout off: the same keys every time
    assert model.training


@pytest.mark.parametrize("kind", KINDS)
def test_compensator_with_an_empty_memory_returns_the_base_scores(kind: str) -> None:
    model = make_model()
    batch = random_batch(SPEC, n=12, seed=6)
    compensator = Compensator(model, fit_key_mean(model, batch), small_memory(kind, model.hidden_dim))

    p_base, p_comp, keys = compensator.predict(batch)

    with torch.no_grad():
        torch.testing.assert_close(p_base, model.predict_proba(batch))
    assert torch.equal(p_comp, p_base)
    assert keys.shape == (12, model.hidden_dim)


@pytest.mark.parametrize("kind", KINDS)
def test_a_memory_fed_zero_errors_leaves_predictions_unchanged(kind: str) -> None:
    model = make_model()
    train = random_batch(SPEC, n=64, seed=7)
    compensator = Compensator(
        model,
        fit_key_mean(model, train),
        small_memory(kind, model.hidden_dim),
        CompensationConfig(lam=0.9, gamma=0.0, shrink=0.0),
    )
    seen = compensator.predict(train)
    # Labels equal to the model's own scores: every stored error y - p_base is zero.
    compensator.observe(seen.keys, seen.p_base, seen.p_base)

    later = compensator.predict(random_batch(SPEC, n=32, seed=8))

    torch.testing.assert_close(later.p_comp, later.p_base, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_observed_errors_move_the_same_events_toward_their_labels(kind: str) -> None:
    model = make_model()
    batch = random_batch(SPEC, n=40, seed=9)
    config = CompensationConfig(lam=0.8, shrink=1.0)
    compensator = Compensator(model, fit_key_mean(model, batch), small_memory(kind, model.hidden_dim), config)
    first = compensator.predict(batch)
    labels = (first.p_base < 0.5).float()  # the model is wrong on every event

    compensator.observe(first.keys, labels, first.p_base)
    second = compensator.predict(batch)

    assert float((second.p_comp - labels).abs().mean()) < float((first.p_base - labels).abs().mean()) - 0.1


def test_multiclass_compensator_outputs_sum_to_one() -> None:
    model = make_model(n_outputs=3)
    batch = random_batch(SPEC, n=30, seed=10)
    compensator = Compensator(model, fit_key_mean(model, batch), small_memory("exact", model.hidden_dim, 3))
    first = compensator.predict(batch)
    compensator.observe(first.keys, torch.arange(30) % 3, first.p_base)

    second = compensator.predict(batch)

    assert second.p_comp.shape == (30, 3)
    torch.testing.assert_close(second.p_comp.sum(dim=1), torch.ones(30))
    assert not torch.allclose(second.p_comp, second.p_base)


def test_compensator_rejects_a_memory_of_another_shape() -> None:
    model = make_model()
    key_mean = torch.zeros(model.hidden_dim)

    with pytest.raises(ValueError, match="memory dim"):
        Compensator(model, key_mean, small_memory("exact", model.hidden_dim + 1))
    with pytest.raises(ValueError, match="n_outputs"):
        Compensator(model, key_mean, small_memory("exact", model.hidden_dim, 3))
    with pytest.raises(ValueError, match="key_mean"):
        Compensator(model, torch.zeros(3), small_memory("exact", model.hidden_dim))
