"""The built-in architectures and the registry that builds them from user config."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from adaptive.ml.architectures import (
    ARCHITECTURES,
    ArchitectureError,
    DeepFM,
    TabularModel,
    build_model,
    logits_to_proba,
    resolve_config,
)
from adaptive.ml.preprocessing import InputSpec
from tests.ml.samples import SPEC, random_batch


def make_model(name: str, n_outputs: int, spec: InputSpec = SPEC, **config: Any) -> TabularModel:
    torch.manual_seed(0)
    return build_model(name, {"hidden": [16, 8], **config}, spec, n_outputs).eval()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("n_outputs", [1, 3])
def test_forward_is_head_of_embed(name: str, n_outputs: int) -> None:
    model = make_model(name, n_outputs)
    batch = random_batch(SPEC)

    h = model.embed(batch)
    logits = model(batch)

    assert h.shape == (7, model.hidden_dim)
    assert logits.shape == (7, n_outputs)
    assert torch.equal(logits, model.head(h))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_binary_predict_proba_is_one_probability_per_row(name: str) -> None:
    proba = make_model(name, 1).predict_proba(random_batch(SPEC))

    assert proba.shape == (7,)
    assert bool(((proba > 0) & (proba < 1)).all())


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_multiclass_predict_proba_rows_sum_to_one(name: str) -> None:
    proba = make_model(name, 4).predict_proba(random_batch(SPEC))

    assert proba.shape == (7, 4)
    assert bool((proba >= 0).all())
    assert proba.sum(dim=1).tolist() == pytest.approx([1.0] * 7, abs=1e-6)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
@pytest.mark.parametrize("spec", [InputSpec(n_numeric=2, cardinalities=()), InputSpec(0, (3, 3, 2))])
def test_models_accept_only_numeric_or_only_categorical_inputs(name: str, spec: InputSpec) -> None:
    model = make_model(name, 1, spec)

    assert model(random_batch(spec)).shape == (7, 1)


def test_hidden_dim_is_the_last_hidden_layer() -> None:
    assert make_model("mlp", 1).hidden_dim == 8
    # DeepFM's h is [deep, fm, first_order]: 8 + embedding_dim + 1.
    assert make_model("deepfm", 1, embedding_dim=4).hidden_dim == 8 + 4 + 1


def test_deepfm_embed_carries_the_fm_interactions_and_the_first_order_term() -> None:
    model = make_model("deepfm", 1, embedding_dim=4)
    assert isinstance(model, DeepFM)
    with torch.no_grad():  # first-order weights start at zero; make them visible
        model.first_order_numeric.normal_()
        for parameter in model.first_order_categorical.parameters():
            parameter.normal_()
    batch = random_batch(SPEC)

    h = model.embed(batch).detach()

    numeric_fields = batch.numeric.unsqueeze(-1) * model.numeric_vectors
    categorical_fields = [table(batch.categorical[:, j]) for j, table in enumerate(model.embeddings)]
    fields = torch.cat([numeric_fields, torch.stack(categorical_fields, dim=1)], dim=1).detach()
    n_fields = fields.shape[1]
    pairwise = torch.stack([fields[:, i] * fields[:, j] for i in range(n_fields) for j in range(i + 1, n_fields)]).sum(
        dim=0
    )
    first_order = batch.numeric @ model.first_order_numeric
    for j, table in enumerate(model.first_order_categorical):
        first_order = first_order + table(batch.categorical[:, j]).squeeze(-1)
    assert torch.allclose(h[:, 8:12], pairwise, atol=1e-5)
    assert torch.allclose(h[:, 12], first_order.detach(), atol=1e-5)


def test_logits_to_proba_matches_sigmoid_and_softmax() -> None:
    logits = torch.tensor([[0.0], [2.0]])

    assert logits_to_proba(logits).tolist() == pytest.approx([0.5, 1 / (1 + torch.e**-2)])
    assert logits_to_proba(torch.zeros(2, 4)).tolist() == [[0.25] * 4] * 2


def test_dropout_is_active_in_training_only() -> None:
    model = make_model("mlp", 1, dropout=0.5)
    batch = random_batch(SPEC, n=64)

    assert torch.equal(model(batch), model(batch))  # eval
    model.train()
    assert not torch.equal(model(batch), model(batch))


def test_resolve_config_fills_in_defaults() -> None:
    assert resolve_config("mlp", {}) == {"hidden": [64, 32], "embedding_dim": 8, "dropout": 0.0}
    assert resolve_config("deepfm", None) == {"hidden": [64, 32], "embedding_dim": 8, "dropout": 0.0}
    assert build_model("deepfm", {"hidden": (32,), "dropout": 0}, SPEC, 1).config == {
        "hidden": [32],
        "embedding_dim": 8,
        "dropout": 0.0,
    }


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("resnet", {}, "unknown architecture 'resnet'; known: deepfm, mlp"),
        ("MLP", {}, "unknown architecture 'MLP'; known: deepfm, mlp"),
        ("mlp", [64, 32], "mlp config must be an object, got list"),
        ("mlp", {"hidden": [8], "layers": 2}, "unknown config keys for mlp: layers; allowed: dropout, embedding_dim"),
        ("mlp", {"hidden": []}, "hidden must be a list of 1 to 16 integers in 1..4096, got []"),
        ("mlp", {"hidden": 64}, "hidden must be a list"),
        ("mlp", {"hidden": [64, 0]}, "hidden must be a list"),
        ("mlp", {"hidden": [4097]}, "hidden must be a list"),
        ("mlp", {"hidden": [64.0]}, "hidden must be a list"),
        ("mlp", {"hidden": [True]}, "hidden must be a list"),
        ("deepfm", {"hidden": [8] * 17}, "hidden must be a list of 1 to 16"),
        ("deepfm", {"embedding_dim": 0}, "embedding_dim must be an integer in 1..512, got 0"),
        ("deepfm", {"embedding_dim": 513}, "embedding_dim must be an integer in 1..512"),
        ("deepfm", {"embedding_dim": 8.0}, "embedding_dim must be an integer in 1..512"),
        ("deepfm", {"embedding_dim": True}, "embedding_dim must be an integer in 1..512"),
        ("mlp", {"dropout": 1}, "dropout must be a number in [0, 1), got 1"),
        ("mlp", {"dropout": -0.1}, "dropout must be a number in [0, 1)"),
        ("mlp", {"dropout": float("nan")}, "dropout must be a number in [0, 1)"),
        ("mlp", {"dropout": "0.1"}, "dropout must be a number in [0, 1)"),
        ("mlp", {"dropout": False}, "dropout must be a number in [0, 1)"),
    ],
)
def test_build_model_rejects_bad_names_and_configs(name: str, config: Any, message: str) -> None:
    with pytest.raises(ArchitectureError) as excinfo:
        build_model(name, config, SPEC, 1)

    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("spec", "n_outputs", "message"),
    [
        (SPEC, 0, "n_outputs must be a positive integer"),
        (SPEC, True, "n_outputs must be a positive integer"),
        (InputSpec(0, ()), 1, "input spec has no features"),
        (InputSpec(2, (3, 0)), 1, "cardinalities must be positive integers"),
        (InputSpec(-1, (3,)), 1, "n_numeric must be >= 0"),
    ],
)
def test_build_model_rejects_bad_specs_and_outputs(spec: InputSpec, n_outputs: int, message: str) -> None:
    with pytest.raises(ArchitectureError, match=message):
        build_model("mlp", {}, spec, n_outputs)


def test_architecture_error_is_a_value_error() -> None:
    assert issubclass(ArchitectureError, ValueError)
