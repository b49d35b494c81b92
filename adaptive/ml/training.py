"""Continual training: one round of fine-tuning a live version into a candidate (DESIGN.md 4.5).

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
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import torch
import torch.nn.functional as F

from adaptive.ml.architectures import TabularModel, build_model, logits_to_proba
from adaptive.ml.flips import roc_auc
from adaptive.ml.preprocessing import InputSpec, TabularBatch

Distillation = Literal["focal"]
LabeledData = tuple[TabularBatch, torch.Tensor]

# Rows per forward pass when predicting without gradients (teacher logits, validation): big enough
# to amortise Python overhead, small enough to stay far from any GPU memory limit.
EVAL_CHUNK: Final = 8192


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
    weight 1 cut negative flips by ~77% on MovieLens but cost ~0.9 accuracy points on the drifted
    period, while 0.2 at T = 2 cut them by 40%+ on both streams within 0.5 points.

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


def learning_rate(step: int, total_steps: int, config: TrainConfig) -> float:
    """The learning rate at optimiser step ``step`` (0-based) of a round of ``total_steps`` steps.

    Linear warm-up over the first ``ceil(warmup_fraction * total_steps)`` steps, from
    ``lr / warmup_steps`` (never exactly 0: a zero step would waste a batch) up to ``lr``; then
    ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 over the rest.
    """
    warmup_steps = math.ceil(config.warmup_fraction * total_steps)
    if step < warmup_steps:
        return config.lr * (step + 1) / warmup_steps
    decay_steps = max(total_steps - warmup_steps - 1, 1)
    t = min((step - warmup_steps) / decay_steps, 1.0)
    return config.min_lr + (config.lr - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def half_finetune_masks(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Boolean masks, ``True`` for the *frozen* elements: exactly ``numel // 2`` of every tensor.

    Half fine-tuning (Hui et al., "HFT: Half Fine-Tuning for Large Language Models", 2024) freezes
    half of the parameters so that what they encode survives the round. HFT picks among whole
    parameter blocks of a large network; the models here have a handful of tensors of very
    different sizes (an embedding table may hold most of the weights), so a choice of tensors would
    freeze anywhere between a few percent and nearly all of them. Half of each tensor's elements
    freezes exactly half, in every layer. The choice is a seeded permutation per tensor (in
    ``named_parameters`` order), hence fixed for a seed.
    """
    generator = torch.Generator().manual_seed(seed)
    masks: dict[str, torch.Tensor] = {}
    for name, parameter in model.named_parameters():
        order = torch.randperm(parameter.numel(), generator=generator)
        mask = torch.zeros(parameter.numel(), dtype=torch.bool)
        mask[order[: parameter.numel() // 2]] = True
        masks[name] = mask.view_as(parameter)
    return masks


def focal_distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    temperature: float,
) -> torch.Tensor:
    """PCT's focal distillation term (Yan et al., CVPR 2021), averaged over the batch.

    ``mean_i[(alpha + beta * 1[teacher right on i]) * T^2 * KL(p_teacher^T_i || p_student^T_i)]``.
    One logit per row (binary) is read as the two-class distribution ``(1 - sigmoid, sigmoid)``, i.e.
    logits ``(0, z)``; the teacher is "right" when its prediction at threshold 0.5 matches the label.
    """
    if student_logits.shape[-1] == 1:
        zeros = torch.zeros_like(student_logits)
        student_logits = torch.cat([zeros, student_logits], dim=-1)
        teacher_logits = torch.cat([torch.zeros_like(teacher_logits), teacher_logits], dim=-1)
    teacher_right = teacher_logits.argmax(dim=-1) == labels.long()
    student_log_p = F.log_softmax(student_logits / temperature, dim=-1)
    teacher_log_p = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(dim=-1)
    weights = alpha + beta * teacher_right.to(kl.dtype)
    return (weights * kl).mean() * temperature**2


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
    return _train(model, new_data, replay_data, config, teacher, progress, synchronize)


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
    result = _train(model, data, None, initial_config, None, progress, synchronize)
    model.load_state_dict(result.state_dict)
    model.eval()
    return model, result


# --- the loop -----------------------------------------------------------------------------------


def _train(
    source: TabularModel,
    new_data: LabeledData,
    replay_data: LabeledData | None,
    config: TrainConfig,
    teacher: TabularModel | None,
    progress: Callable[[Progress], None] | None,
    synchronize: Callable[[], None] | None,
) -> TrainResult:
    # The plain clock when no hook is given: timing costs what it always did.
    now = time.perf_counter if synchronize is None else _synchronized_clock(synchronize)
    device = resolve_device(config.device)
    binary = source.n_outputs == 1
    new_batch, new_labels = _check_data(new_data, "new_data", source)
    if len(new_batch) == 0:
        raise ValueError("new_data is empty: a round needs at least one new labeled event")
    data_clock = now()

    # One generator for every random choice of the round, in a fixed order: replay sample,
    # validation split, half-fine-tune masks, batch order. Dropout draws from the global generator,
    # which fork_rng seeds below without disturbing the caller's.
    generator = torch.Generator().manual_seed(config.seed)
    replay_batch, replay_labels, n_replay = _replay_sample(replay_data, len(new_batch), config, generator, source)
    n_validation = _validation_size(len(new_batch), config.validation_fraction)
    # Validation comes from the new data only: the candidate will serve recent traffic, and the
    # replay rows are there to be remembered, not to pick the epoch.
    permutation = torch.randperm(len(new_batch), generator=generator)
    validation_index, train_index = permutation[:n_validation], permutation[n_validation:]
    train_batch = _concat(new_batch.select(train_index), replay_batch)
    train_labels = torch.cat([new_labels[train_index], replay_labels])
    validation_batch, validation_labels = new_batch.select(validation_index), new_labels[validation_index]
    masks = half_finetune_masks(source, config.seed) if config.half_finetune else None

    train_batch, validation_batch = train_batch.to(device), validation_batch.to(device)
    train_labels, validation_labels = train_labels.to(device), validation_labels.to(device)
    model = copy.deepcopy(source).to(device)
    seconds_data = now() - data_clock
    seconds_compute = 0.0

    # fork_rng saves and restores the generator of the device the round runs on, not all of them.
    devices = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        compute_clock = now()
        teacher_logits = None
        if config.distillation is not None and teacher is not None:
            teacher_copy = copy.deepcopy(teacher).to(device)
            teacher_logits = _predict_logits(teacher_copy, train_batch)
            del teacher_copy
        frozen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        if masks is not None:
            for name, parameter in model.named_parameters():
                mask = masks[name].to(device)
                frozen[name] = (mask, parameter.detach().clone())
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
        )
        seconds_compute += now() - compute_clock

        n_train = len(train_batch)
        steps_per_epoch = max(math.ceil(n_train / config.batch_size), 1)
        total_steps = steps_per_epoch * config.epochs
        step = 0
        lr = learning_rate(0, total_steps, config)
        curve: list[dict[str, Any]] = []
        best_loss, best_epoch, best_state = math.inf, 0, None
        epochs_without_improvement = 0
        stopped_early = False
        for epoch in range(1, config.epochs + 1):
            epoch_clock = now()
            model.train()
            clock = now()
            order = torch.randperm(n_train, generator=generator).to(device)
            seconds_data += now() - clock
            loss_sum, rows_seen = 0.0, 0
            for start in range(0, n_train, config.batch_size):
                clock = now()
                index = order[start : start + config.batch_size]
                batch, labels = train_batch.select(index), train_labels[index]
                batch_teacher = teacher_logits[index] if teacher_logits is not None else None
                seconds_data += now() - clock

                clock = now()
                lr = learning_rate(step, total_steps, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                logits = model(batch)
                loss = _task_loss(logits, labels, binary)
                if batch_teacher is not None:
                    loss = loss + config.distill_weight * focal_distillation_loss(
                        logits,
                        batch_teacher,
                        labels,
                        alpha=config.distill_alpha,
                        beta=config.distill_beta,
                        temperature=config.temperature,
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if frozen:
                    _mask_gradients(model, frozen)
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                if frozen:
                    _restore_frozen(model, frozen)
                # .item() synchronises with the device once per step; it also makes the compute
                # clock honest on CUDA, where kernels run asynchronously.
                loss_sum += loss.item() * len(index)
                rows_seen += len(index)
                step += 1
                seconds_compute += now() - clock

            clock = now()
            train_loss = loss_sum / max(rows_seen, 1)
            point: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
            if n_validation:
                val_loss, val_auc, val_accuracy = _validate(model, validation_batch, validation_labels, binary)
                point.update(val_loss=val_loss, val_auc=val_auc, val_accuracy=val_accuracy)
                if val_loss < best_loss:
                    best_loss, best_epoch, epochs_without_improvement = val_loss, epoch, 0
                    if config.restore_best:
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    epochs_without_improvement += 1
            else:
                point.update(val_loss=None, val_auc=None, val_accuracy=None)
                best_epoch = epoch
            seconds_compute += now() - clock
            point["seconds"] = now() - epoch_clock
            curve.append(point)
            stopped_early = config.patience is not None and epochs_without_improvement >= config.patience
            if progress is not None:
                progress(
                    Progress(fraction=1.0 if stopped_early else epoch / config.epochs, epoch=epoch, loss=train_loss)
                )
            if stopped_early:
                break

    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = curve[-1]["epoch"]
    state_dict = {key: value.detach().to("cpu").clone() for key, value in model.state_dict().items()}
    epochs_run = len(curve)
    seconds = seconds_data + seconds_compute
    return TrainResult(
        state_dict=state_dict,
        curve=curve,
        best_epoch=best_epoch,
        device=str(device),
        samples_per_second=n_train * epochs_run / seconds if seconds > 0 else 0.0,
        seconds_data=seconds_data,
        seconds_compute=seconds_compute,
        n_train=n_train,
        n_replay=n_replay,
        n_validation=n_validation,
        validation_index=validation_index,
        stopped_early=stopped_early,
        config=_config_dict(config),
    )


def _synchronized_clock(synchronize: Callable[[], None]) -> Callable[[], float]:
    """``time.perf_counter`` that first waits for the device's queued work (see ``continual_train``)."""

    def clock() -> float:
        synchronize()
        return time.perf_counter()

    return clock


def _task_loss(logits: torch.Tensor, labels: torch.Tensor, binary: bool) -> torch.Tensor:
    if binary:
        return F.binary_cross_entropy_with_logits(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels.long())


@torch.no_grad()
def _predict_logits(model: TabularModel, batch: TabularBatch) -> torch.Tensor:
    model.eval()
    parts = [model(batch[start : start + EVAL_CHUNK]) for start in range(0, len(batch), EVAL_CHUNK)]
    return torch.cat(parts) if parts else torch.zeros(0, model.n_outputs, device=batch.device)


def _validate(
    model: TabularModel, batch: TabularBatch, labels: torch.Tensor, binary: bool
) -> tuple[float, float | None, float]:
    """Task loss, AUC (``None`` for a single-class split) and accuracy on the validation split."""
    logits = _predict_logits(model, batch)
    loss = float(_task_loss(logits, labels, binary).item())
    proba = logits_to_proba(logits).cpu()
    y = labels.cpu().long()
    predicted = (proba >= 0.5).long() if binary else proba.argmax(dim=1)
    accuracy = float((predicted == y).double().mean().item())
    return loss, roc_auc(proba, y), accuracy


def _mask_gradients(model: torch.nn.Module, frozen: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    # Zeroed before clipping so frozen elements do not count in the gradient norm, and before the
    # step so Adam's moments for them stay zero.
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            parameter.grad.masked_fill_(frozen[name][0], 0.0)


@torch.no_grad()
def _restore_frozen(model: torch.nn.Module, frozen: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    # AdamW's decoupled weight decay shrinks every element, gradient or not: putting the frozen
    # values back after each step is what keeps them exactly unchanged.
    for name, parameter in model.named_parameters():
        mask, values = frozen[name]
        parameter.copy_(torch.where(mask, values, parameter))


def _check_data(data: LabeledData, name: str, model: TabularModel) -> tuple[TabularBatch, torch.Tensor]:
    batch, labels = data
    if labels.dim() != 1 or labels.shape[0] != len(batch):
        raise ValueError(f"{name}: labels must be [N] with N = {len(batch)}, got shape {tuple(labels.shape)}")
    n_classes = 2 if model.n_outputs == 1 else model.n_outputs
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes or not torch.all(labels == labels.round())):
        raise ValueError(f"{name}: labels must be class indexes in 0..{n_classes - 1}")
    dtype = torch.float32 if model.n_outputs == 1 else torch.int64
    return batch.to("cpu"), labels.to("cpu", dtype)


def _replay_sample(
    replay_data: LabeledData | None,
    n_new: int,
    config: TrainConfig,
    generator: torch.Generator,
    model: TabularModel,
) -> tuple[TabularBatch | None, torch.Tensor, int]:
    dtype = torch.float32 if model.n_outputs == 1 else torch.int64
    if replay_data is None:
        return None, torch.zeros(0, dtype=dtype), 0
    batch, labels = _check_data(replay_data, "replay_data", model)
    wanted = config.replay_size if config.replay_size is not None else round(config.replay_fraction * n_new)
    n_replay = min(wanted, len(batch))
    index = torch.randperm(len(batch), generator=generator)[:n_replay]
    return batch.select(index), labels[index], n_replay


def _validation_size(n_new: int, fraction: float) -> int:
    if fraction == 0 or n_new < 2:
        return 0
    # At least one validation row when asked for, and at least one new row left to train on.
    return min(max(round(fraction * n_new), 1), n_new - 1)


def _concat(first: TabularBatch, second: TabularBatch | None) -> TabularBatch:
    if second is None or len(second) == 0:
        return first
    return TabularBatch(
        torch.cat([first.numeric, second.numeric.to(first.numeric.dtype)]),
        torch.cat([first.categorical, second.categorical]),
    )


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}
