"""Continual training on tiny synthetic data: schedule, early stopping, half fine-tuning, seeds,
progress, and focal distillation cutting negative flips."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from adaptive.ml.architectures import TabularModel, build_model
from adaptive.ml.flips import flip_report
from adaptive.ml.preprocessing import InputSpec, TabularBatch
from adaptive.ml.training import (
    Progress,
    TrainConfig,
    continual_train,
    focal_distillation_loss,
    half_finetune_masks,
    learning_rate,
    train_initial,
)

SPEC = InputSpec(n_numeric=3, cardinalities=(5, 4))
MODEL_CONFIG = {"hidden": [16, 8], "embedding_dim": 4}
# Each category of the first field shifts the logit; the second field is noise.
CATEGORY_EFFECT = torch.tensor([0.0, 1.5, -1.5, 0.5, -0.5])


def make_data(
    n: int,
    seed: int,
    *,
    shift: float = 0.0,
    tilt: float = 0.0,
    noise: float = 1.0,
    n_classes: int = 2,
) -> tuple[TabularBatch, torch.Tensor]:
    """Synthetic events: logit = 2 x0 - x1 + tilt * x2 + category effect, plus logistic noise.

    ``shift`` moves the numeric inputs (covariate drift) and ``tilt`` changes the concept. With
    ``n_classes == 3`` the logit is cut into three bands.
    """
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, SPEC.n_numeric, generator=generator) + shift
    categorical = torch.stack(
        [torch.randint(0, cardinality, (n,), generator=generator) for cardinality in SPEC.cardinalities], dim=1
    )
    logit = 2 * numeric[:, 0] - numeric[:, 1] + tilt * numeric[:, 2] + CATEGORY_EFFECT[categorical[:, 0]]
    uniform = torch.rand(n, generator=generator).clamp(1e-6, 1 - 1e-6)
    noisy = logit + noise * torch.log(uniform / (1 - uniform))
    labels = (noisy > 0).float() if n_classes == 2 else torch.bucketize(noisy, torch.tensor([-1.0, 1.0]))
    return TabularBatch(numeric, categorical), labels


def fresh_model(seed: int = 0, n_outputs: int = 1) -> TabularModel:
    torch.manual_seed(seed)
    return build_model("mlp", MODEL_CONFIG, SPEC, n_outputs)


def bce(model: TabularModel, batch: TabularBatch, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(F.binary_cross_entropy_with_logits(model(batch).squeeze(1), labels).item())


def loaded(state_dict: dict[str, torch.Tensor], n_outputs: int = 1) -> TabularModel:
    model = fresh_model(n_outputs=n_outputs)
    model.load_state_dict(state_dict)
    return model.eval()


def probabilities(model: TabularModel, batch: TabularBatch) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model.predict_proba(batch)


# --- configuration and schedule -----------------------------------------------------------------


def test_config_rejects_bad_values_with_every_problem_named() -> None:
    with pytest.raises(ValueError, match=r"epochs must be >= 1.*warmup_fraction must be in \[0, 1\)"):
        TrainConfig(epochs=0, warmup_fraction=1.5)
    with pytest.raises(ValueError, match="distillation must be None or 'focal'"):
        TrainConfig(distillation="soft")  # type: ignore[arg-type]


def test_learning_rate_warms_up_linearly_then_decays_along_a_cosine() -> None:
    config = TrainConfig(lr=0.01, min_lr=0.001, warmup_fraction=0.1)
    rates = [learning_rate(step, 100, config) for step in range(100)]

    # Warm-up: 10 steps from lr/10 up to lr, in equal increments.
    assert rates[:10] == pytest.approx([0.001 * (step + 1) for step in range(10)])
    # Decay: never increasing, from the peak down to min_lr at the last step, through the cosine's
    # midpoint (lr + min_lr) / 2 halfway.
    decay = rates[10:]
    assert all(later <= earlier for earlier, later in itertools.pairwise(decay))
    assert decay[0] == pytest.approx(0.01)
    assert decay[-1] == pytest.approx(0.001)
    assert learning_rate(10 + 89 // 2, 100, config) == pytest.approx(0.0055, abs=1e-4)


def test_learning_rate_without_warmup_starts_at_the_peak() -> None:
    config = TrainConfig(lr=0.01, min_lr=0.0, warmup_fraction=0.0)

    assert learning_rate(0, 50, config) == pytest.approx(0.01)
    assert learning_rate(49, 50, config) == pytest.approx(0.0)


def test_curve_records_the_schedule_per_epoch() -> None:
    config = TrainConfig(epochs=6, batch_size=100, lr=0.01, min_lr=0.0, warmup_fraction=0.3, patience=None)
    _, result = train_initial("mlp", MODEL_CONFIG, SPEC, 1, make_data(500, seed=0), config)

    rates = [point["lr"] for point in result.curve]
    # Warm-up covers the first two of six epochs, then the cosine runs down to 0.
    assert rates[0] < rates[1]
    assert rates[1] == pytest.approx(0.01)
    assert all(later < earlier for earlier, later in itertools.pairwise(rates[1:]))
    assert rates[-1] == pytest.approx(0.0)


# --- the loop -----------------------------------------------------------------------------------


def test_initial_training_lowers_the_loss_and_learns() -> None:
    config = TrainConfig(epochs=8, batch_size=64, lr=0.01, patience=None)
    model, result = train_initial("mlp", MODEL_CONFIG, SPEC, 1, make_data(1000, seed=0), config)

    losses = [point["train_loss"] for point in result.curve]
    assert losses[-1] < 0.8 * losses[0]
    assert result.curve[-1]["val_auc"] > 0.8
    assert result.device == "cpu"
    assert result.samples_per_second > 0
    assert result.seconds_data > 0 and result.seconds_compute > 0
    assert all(value.device.type == "cpu" for value in result.state_dict.values())
    test_batch, test_labels = make_data(500, seed=1)
    report = flip_report(probabilities(model, test_batch), probabilities(model, test_batch), test_labels)
    assert report.new_auc is not None and report.new_auc > 0.8


def test_multiclass_training_with_distillation_runs_and_learns() -> None:
    config = TrainConfig(epochs=6, batch_size=64, lr=0.01, patience=None)
    model, initial = train_initial("mlp", MODEL_CONFIG, SPEC, 3, make_data(900, seed=0, n_classes=3), config)
    assert initial.curve[-1]["val_accuracy"] > 0.5

    result = continual_train(
        model,
        make_data(600, seed=1, n_classes=3, shift=0.5),
        make_data(600, seed=0, n_classes=3),
        TrainConfig(epochs=3, batch_size=64, lr=0.005, distillation="focal", temperature=2.0, patience=None),
    )

    assert result.curve[-1]["val_accuracy"] > 0.5
    assert result.curve[-1]["val_auc"] is not None


def test_continual_training_leaves_the_given_model_untouched() -> None:
    model = fresh_model()
    before = {key: value.clone() for key, value in model.state_dict().items()}

    result = continual_train(model, make_data(300, seed=0), None, TrainConfig(epochs=2, lr=0.01))

    assert all(torch.equal(model.state_dict()[key], before[key]) for key in before)
    assert any(not torch.equal(result.state_dict[key], before[key]) for key in before)


def test_replay_sample_size_follows_fraction_or_size() -> None:
    new, old = make_data(200, seed=0), make_data(1000, seed=1)
    config = TrainConfig(epochs=1, validation_fraction=0.1, replay_fraction=0.5)

    by_fraction = continual_train(fresh_model(), new, old, config)
    by_size = continual_train(fresh_model(), new, old, TrainConfig(epochs=1, validation_fraction=0.1, replay_size=30))
    capped = continual_train(fresh_model(), new, make_data(40, seed=2), config)

    assert (by_fraction.n_replay, by_fraction.n_validation, by_fraction.n_train) == (100, 20, 180 + 100)
    assert by_size.n_replay == 30
    assert capped.n_replay == 40


def test_early_stopping_restores_the_best_epoch() -> None:
    # Few noisy events and a high learning rate: the model overfits after a few epochs.
    new = make_data(120, seed=3, noise=3.0)
    config = TrainConfig(
        epochs=40,
        batch_size=16,
        lr=0.05,
        warmup_fraction=0.0,
        min_lr=0.05,
        validation_fraction=0.4,
        patience=3,
        max_grad_norm=None,
    )

    result = continual_train(fresh_model(), new, None, config)

    val_losses = [point["val_loss"] for point in result.curve]
    assert result.stopped_early
    assert len(result.curve) == result.best_epoch + 3
    assert val_losses[result.best_epoch - 1] == min(val_losses)
    # The returned weights are the best epoch's: they reproduce its validation loss.
    batch, labels = new
    index = result.validation_index
    assert bce(loaded(result.state_dict), batch.select(index), labels[index]) == pytest.approx(
        val_losses[result.best_epoch - 1], rel=1e-5
    )


def test_half_finetuning_leaves_the_frozen_half_unchanged() -> None:
    model = fresh_model()
    config = TrainConfig(epochs=3, lr=0.02, weight_decay=0.1, half_finetune=True, seed=7)
    masks = half_finetune_masks(model, seed=7)

    result = continual_train(model, make_data(400, seed=0), None, config)

    for name, start in model.named_parameters():
        frozen, trained = masks[name], result.state_dict[name]
        assert int(frozen.sum()) == start.numel() // 2
        assert torch.equal(trained[frozen], start.detach()[frozen]), name
        # The other half learns (weight decay alone would move every element).
        assert not torch.equal(trained[~frozen], start.detach()[~frozen]), name


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    new, old = make_data(300, seed=0), make_data(300, seed=1)
    model = fresh_model()
    config = TrainConfig(epochs=2, lr=0.01, distillation="focal", half_finetune=True, seed=11)

    first = continual_train(model, new, old, config)
    second = continual_train(model, new, old, config)
    other = continual_train(model, new, old, dataclasses.replace(config, seed=12))

    assert all(torch.equal(first.state_dict[key], second.state_dict[key]) for key in first.state_dict)
    assert [p["train_loss"] for p in first.curve] == [p["train_loss"] for p in second.curve]
    assert any(not torch.equal(first.state_dict[key], other.state_dict[key]) for key in first.state_dict)


def test_initial_training_is_reproducible_for_a_seed() -> None:
    data = make_data(200, seed=0)
    config = TrainConfig(epochs=2, seed=5)

    first, _ = train_initial("deepfm", MODEL_CONFIG, SPEC, 1, data, config)
    second, _ = train_initial("deepfm", MODEL_CONFIG, SPEC, 1, data, config)

    assert all(
        torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True)
    )


def test_progress_is_monotone_and_ends_at_one() -> None:
    seen: list[Progress] = []

    continual_train(
        fresh_model(), make_data(200, seed=0), None, TrainConfig(epochs=4, patience=None), progress=seen.append
    )

    fractions = [p.fraction for p in seen]
    assert fractions == [0.25, 0.5, 0.75, 1.0]
    assert [p.epoch for p in seen] == [1, 2, 3, 4]
    assert all(math.isfinite(p.loss) for p in seen)


def test_progress_reaches_one_when_stopping_early() -> None:
    seen: list[Progress] = []
    config = TrainConfig(epochs=40, batch_size=16, lr=0.05, min_lr=0.05, validation_fraction=0.4, patience=2)

    result = continual_train(fresh_model(), make_data(120, seed=3, noise=3.0), None, config, progress=seen.append)

    assert result.stopped_early
    fractions = [p.fraction for p in seen]
    assert all(later > earlier for earlier, later in itertools.pairwise(fractions))
    assert fractions[-1] == 1.0


# --- focal distillation -------------------------------------------------------------------------


def test_focal_distillation_loss_by_hand() -> None:
    student = torch.tensor([[0.0], [0.0]])
    teacher = torch.tensor([[2.0], [2.0]])  # p_teacher = sigmoid(2) for both events
    labels = torch.tensor([1.0, 0.0])  # the teacher is right on the first event only
    p = torch.sigmoid(torch.tensor(2.0))
    kl = p * torch.log(p / 0.5) + (1 - p) * torch.log((1 - p) / 0.5)

    loss = focal_distillation_loss(student, teacher, labels, alpha=1.0, beta=5.0, temperature=1.0)

    # Weights 1 + 5 on the event the teacher gets right, 1 on the other.
    assert loss.item() == pytest.approx(((6 + 1) * kl / 2).item())
    assert focal_distillation_loss(teacher, teacher, labels, alpha=1.0, beta=5.0, temperature=3.0).item() == (
        pytest.approx(0.0, abs=1e-7)
    )


def test_focal_distillation_binary_matches_the_two_class_softmax() -> None:
    generator = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(8, 1, generator=generator), torch.randn(8, 1, generator=generator)
    labels = torch.randint(0, 2, (8,), generator=generator)
    as_two_classes = (torch.cat([torch.zeros(8, 1), student], 1), torch.cat([torch.zeros(8, 1), teacher], 1))

    binary = focal_distillation_loss(student, teacher, labels.float(), alpha=1.0, beta=5.0, temperature=2.0)
    multiclass = focal_distillation_loss(*as_two_classes, labels, alpha=1.0, beta=5.0, temperature=2.0)

    assert binary.item() == pytest.approx(multiclass.item())


def test_distillation_teacher_defaults_to_the_starting_model() -> None:
    model = fresh_model()
    new = make_data(200, seed=0)
    config = TrainConfig(epochs=2, distillation="focal")

    implicit = continual_train(model, new, None, config)
    explicit = continual_train(model, new, None, config, teacher=model)

    assert all(torch.equal(implicit.state_dict[key], explicit.state_dict[key]) for key in implicit.state_dict)


def test_focal_distillation_reduces_negative_flips() -> None:
    # Given a model trained on period A, and a period B whose inputs drift and whose concept tilts,
    train_a = make_data(1500, seed=0)
    teacher, _ = train_initial("mlp", MODEL_CONFIG, SPEC, 1, train_a, TrainConfig(epochs=10, lr=0.01, seed=0))
    train_b = make_data(1500, seed=1, shift=0.7, tilt=1.5)
    held_out_a, held_out_b = make_data(1000, seed=2), make_data(1000, seed=3, shift=0.7, tilt=1.5)
    held_out = TabularBatch(
        torch.cat([held_out_a[0].numeric, held_out_b[0].numeric]),
        torch.cat([held_out_a[0].categorical, held_out_b[0].categorical]),
    )
    labels = torch.cat([held_out_a[1], held_out_b[1]])
    plain_config = TrainConfig(epochs=10, batch_size=64, lr=0.01, patience=None, seed=0)

    # when the same update (same data, seed and schedule) runs with and without focal distillation,
    plain = continual_train(teacher, train_b, None, plain_config)
    # PCT's loss as published (weight 1, T = 1), rather than the milder defaults tuned for the streams.
    focal_config = dataclasses.replace(plain_config, distillation="focal", distill_weight=1.0, temperature=1.0)
    focal = continual_train(teacher, train_b, None, focal_config)

    # then distillation flips far fewer of the old model's right answers, at no real accuracy cost.
    old = probabilities(teacher, held_out)
    plain_report = flip_report(old, probabilities(loaded(plain.state_dict), held_out), labels)
    focal_report = flip_report(old, probabilities(loaded(focal.state_dict), held_out), labels)
    assert focal_report.nfr < 0.6 * plain_report.nfr
    assert focal_report.new_accuracy > plain_report.new_accuracy - 0.02
