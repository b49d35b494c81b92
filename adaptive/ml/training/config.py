"""What a training round takes and returns: its config, progress reports and result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from adaptive.ml.preprocessing import TabularBatch

Distillation = Literal["focal"]
LabeledData = tuple[TabularBatch, torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training round; the defaults suit the small tabular models here.

    Learning rate: ``warmup_fraction`` of all planned steps go linearly from ``lr / warmup_steps``
    to ``lr``, the rest follow a cosine from ``lr`` down to ``min_lr`` (``learning_rate``).

    Replay: ``replay_size`` rows, or ``replay_fraction * len(new data)`` rows when ``replay_size`` is
    ``None``, drawn without replacement from the older data the caller passes (all of it if it holds
    fewer).

    Distillation (``"focal"`` or ``None``): PCT's focal distillation with ``distill_alpha``,
    ``distill_beta``, ``temperature`` and an overall ``distill_weight`` on the KL term. alpha 1 and
    beta 5 are PCT's; T = 2 and weight 0.2 were tuned with ``bench/flips.py`` on both dev streams:
    a weight of 1 cut more negative flips but cost too much accuracy on the drifted period, while
    0.2 at T = 2 met the flip target within the accuracy budget on both (see bench/README.md).

    Early stopping: ``validation_fraction`` of the new data is held out; training stops after
    ``patience`` epochs without a better validation loss (``None``: never stops early) and the best
    epoch's weights are returned when ``restore_best``. ``validation_fraction = 0`` trains on
    everything and returns the last epoch.

    ``device``: ``"auto"`` (``cuda`` when available, else ``cpu``) or any ``torch.device`` string.
    ``max_grad_norm``: clip the global gradient norm (``None``: no clipping).
    """

    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    replay_fraction: float = 0.5
    replay_size: int | None = None
    distillation: Distillation | None = None
    distill_alpha: float = 1.0
    distill_beta: float = 5.0
    temperature: float = 2.0
    distill_weight: float = 0.2
    half_finetune: bool = False
    validation_fraction: float = 0.1
    patience: int | None = 3
    restore_best: bool = True
    seed: int = 0
    device: str = "auto"
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            problems.append(f"min_lr must be in [0, lr], got {self.min_lr}")
        if not 0 <= self.warmup_fraction < 1:
            problems.append(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.replay_fraction < 0:
            problems.append(f"replay_fraction must be >= 0, got {self.replay_fraction}")
        if self.replay_size is not None and self.replay_size < 0:
            problems.append(f"replay_size must be >= 0 or None, got {self.replay_size}")
        if self.distillation not in (None, "focal"):
            problems.append(f"distillation must be None or 'focal', got {self.distillation!r}")
        if self.distill_alpha < 0 or self.distill_beta < 0 or self.distill_weight < 0:
            problems.append("distill_alpha, distill_beta and distill_weight must be >= 0")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.validation_fraction < 1:
            problems.append(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if self.patience is not None and self.patience < 1:
            problems.append(f"patience must be >= 1 or None, got {self.patience}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))


@dataclass(frozen=True)
class Progress:
    """What a progress callback receives after each epoch: ``fraction`` of the planned epochs done
    (reaching exactly 1.0 at the end, early stop included), the epoch number (1-based) and that
    epoch's mean training loss."""

    fraction: float
    epoch: int
    loss: float


@dataclass(frozen=True)
class TrainResult:
    """The outcome of a round.

    ``state_dict`` holds CPU tensors, ready for ``weights.state_dict_to_bytes``-style storage.
    ``curve`` has one JSON-ready dict per epoch: ``epoch``, ``train_loss`` (task + distillation),
    ``val_loss`` (task loss only, so rounds with and without distillation compare), ``val_auc``,
    ``val_accuracy`` (``None`` without a validation split), ``lr`` (at the epoch's last step) and
    ``seconds``. ``best_epoch`` is the epoch whose weights were returned.

    Timing: ``seconds_data`` covers sampling, splitting, moving tensors to the device and gathering
    mini-batches; ``seconds_compute`` covers the teacher's predictions, forward, backward, optimiser
    steps and validation. ``samples_per_second`` is training rows processed (rows x epochs run) per
    second of the two together. On CUDA the split is only exact with a ``synchronize`` hook (see
    ``continual_train``): kernels run asynchronously, so without it a mini-batch's gather is merely
    queued during the data section and its GPU time lands in the compute section.

    ``validation_index`` lists the rows of ``new_data`` held out for early stopping (empty without a
    split), so a caller can tell which events the candidate never trained on.
    """

    state_dict: dict[str, torch.Tensor]
    curve: list[dict[str, Any]]
    best_epoch: int
    device: str
    samples_per_second: float
    seconds_data: float
    seconds_compute: float
    n_train: int
    n_replay: int
    n_validation: int
    validation_index: torch.Tensor
    stopped_early: bool = False
    config: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else as ``torch.device`` reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
