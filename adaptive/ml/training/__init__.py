"""Continual training: one round of fine-tuning a live version into a candidate.

A round starts from the live version's weights and trains on recent labeled events plus a seeded
*replay* sample of older ones (data accumulates, it is never replaced). Each round re-warms the
learning rate linearly from ~0 to its peak, then re-decays it along a cosine to ``min_lr``
(warm restarts: Loshchilov & Hutter, SGDR 2017; re-warming for continual pre-training: Gupta et al.
2023). Options that cut *negative flips* (see ``adaptive.ml.flips``):

* focal distillation against the live model (Yan et al., "Positive-Congruent Training", CVPR 2021):
  ``loss = CE + w * mean_i[(alpha + beta * 1[old right on i]) * T^2 * KL(p_old^T_i || p_new^T_i)]``
  with ``p^T = softmax(logits / T)``, ``alpha = 1``, ``beta = 5``. The KL term keeps the new model
  close to the old one everywhere (alpha) and much closer where the old one was right (beta): those
  are the events a flip would turn into regressions. ``T^2`` keeps the gradient scale independent
  of the temperature (Hinton et al., 2015);
* half fine-tuning: a fixed half of the parameters stays frozen (see ``half_finetune_masks``).

Early stopping watches the plain task loss on a validation split of the new data and restores the
best epoch. Training runs on ``cuda`` when available unless the config names a device; every random
choice comes from ``seed``, so a CPU run is reproducible bit for bit.

The package, by module: ``config`` (``TrainConfig``, ``Progress``, ``TrainResult``), ``techniques``
(the learning rate schedule, half fine-tuning masks, focal distillation), ``rows`` (replay sample
and validation split) and ``loop`` (epochs, validation, early stopping). The entry points are here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from adaptive.ml.architectures import TabularModel, build_model
from adaptive.ml.preprocessing import InputSpec
from adaptive.ml.training.config import (
    Distillation,
    LabeledData,
    Progress,
    TrainConfig,
    TrainResult,
    resolve_device,
)
from adaptive.ml.training.loop import EVAL_CHUNK, train_round
from adaptive.ml.training.techniques import focal_distillation_loss, half_finetune_masks, learning_rate

__all__ = [
    "EVAL_CHUNK",
    "Distillation",
    "LabeledData",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "continual_train",
    "focal_distillation_loss",
    "half_finetune_masks",
    "learning_rate",
    "resolve_device",
    "train_initial",
]


def continual_train(
    model: TabularModel,
    new_data: LabeledData,
    replay_data: LabeledData | None,
    config: TrainConfig,
    teacher: TabularModel | None = None,
    progress: Callable[[Progress], None] | None = None,
    synchronize: Callable[[], None] | None = None,
) -> TrainResult:
    """Fine-tune ``model`` from its current weights on ``new_data`` plus a replay sample.

    ``new_data`` and ``replay_data`` are ``(batch, labels)``: labels 0/1 for a binary model
    (``n_outputs == 1``, trained with BCE on the logit), class indexes for a multiclass one (cross
    entropy). With ``config.distillation == "focal"`` the ``teacher`` defaults to a frozen copy of
    ``model`` as passed, i.e. the live version the round starts from; without distillation a
    teacher is not used.

    ``model`` itself is left untouched (a copy is trained), so the caller still holds the live
    version; load ``TrainResult.state_dict`` into a model to get the candidate.

    ``synchronize`` is a timing hook for measurements (``bench/gpu_train.py``): when given, it is
    called before every clock reading that splits ``seconds_data`` from ``seconds_compute``, so
    each section is charged for its own device work. Pass ``torch.cuda.synchronize`` on CUDA. It
    adds a device round trip per section and changes nothing else; ``None`` (the default) reads
    the clock exactly as before.
    """
    if config.distillation is not None and teacher is None:
        teacher = model
    return train_round(model, new_data, replay_data, config, teacher, progress, synchronize)


def train_initial(
    architecture: str,
    model_config: dict[str, Any] | None,
    spec: InputSpec,
    n_outputs: int,
    data: LabeledData,
    config: TrainConfig,
    progress: Callable[[Progress], None] | None = None,
    synchronize: Callable[[], None] | None = None,
) -> tuple[TabularModel, TrainResult]:
    """Train a first version from fresh weights: the same loop without replay or distillation.

    The weights are initialised under ``config.seed``, so the result is reproducible; returns the
    trained model (on the CPU, in eval mode) and the round's result. ``synchronize``: as for
    ``continual_train``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(architecture, model_config, spec, n_outputs)
    initial_config = dataclasses.replace(config, distillation=None, half_finetune=False)
    result = train_round(model, data, None, initial_config, None, progress, synchronize)
    model.load_state_dict(result.state_dict)
    model.eval()
    return model, result
