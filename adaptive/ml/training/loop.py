"""The training loop of a round: epochs of shuffled mini-batches, validation and early stopping."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import torch
import torch.nn.functional as F

from adaptive.ml.architectures import TabularModel, logits_to_proba
from adaptive.ml.flips import roc_auc
from adaptive.ml.preprocessing import TabularBatch
from adaptive.ml.training.config import LabeledData, Progress, TrainConfig, TrainResult, resolve_device
from adaptive.ml.training.rows import RoundData, check_data, split_rows
from adaptive.ml.training.techniques import focal_distillation_loss, half_finetune_masks, learning_rate

# Rows per forward pass when predicting without gradients (teacher logits, validation): big enough
# to amortise Python overhead, small enough to stay far from any GPU memory limit.
EVAL_CHUNK: Final = 8192


@dataclass
class _Timing:
    """The round's clock and the seconds charged so far to data handling and to compute."""

    now: Callable[[], float]
    data: float = 0.0
    compute: float = 0.0


@dataclass
class _Round:
    """What every step of a round reads: the model being trained, its optimiser and its inputs."""

    model: TabularModel
    optimizer: torch.optim.Optimizer
    data: RoundData
    config: TrainConfig
    generator: torch.Generator
    timing: _Timing
    device: torch.device
    binary: bool
    teacher_logits: torch.Tensor | None
    frozen: dict[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class _BestEpoch:
    """Early stopping's bookkeeping: the best validation loss so far and its epoch's weights."""

    loss: float = math.inf
    epoch: int = 0
    state: dict[str, torch.Tensor] | None = None
    epochs_without_improvement: int = 0


def train_round(
    source: TabularModel,
    new_data: LabeledData,
    replay_data: LabeledData | None,
    config: TrainConfig,
    teacher: TabularModel | None,
    progress: Callable[[Progress], None] | None,
    synchronize: Callable[[], None] | None,
) -> TrainResult:
    # The plain clock when no hook is given: timing costs what it always did.
    timing = _Timing(time.perf_counter if synchronize is None else _synchronized_clock(synchronize))
    device = resolve_device(config.device)
    new_batch, new_labels = check_data(new_data, "new_data", source)
    if len(new_batch) == 0:
        raise ValueError("new_data is empty: a round needs at least one new labeled event")
    data_clock = timing.now()
    # One generator for every random choice of the round, in a fixed order: replay sample,
    # validation split, half-fine-tune masks, batch order. Dropout draws from the global generator,
    # which fork_rng seeds below without disturbing the caller's.
    generator = torch.Generator().manual_seed(config.seed)
    data = split_rows(source, new_batch, new_labels, replay_data, config, generator, device)
    masks = half_finetune_masks(source, config.seed) if config.half_finetune else None
    model = copy.deepcopy(source).to(device)
    timing.data += timing.now() - data_clock

    # fork_rng saves and restores the generator of the device the round runs on, not all of them.
    devices = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        compute_clock = timing.now()
        teacher_logits = None
        if config.distillation is not None and teacher is not None:
            teacher_copy = copy.deepcopy(teacher).to(device)
            teacher_logits = _predict_logits(teacher_copy, data.train_batch)
            del teacher_copy
        frozen = _frozen_values(model, masks, device)
        optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
        )
        timing.compute += timing.now() - compute_clock
        run = _Round(
            model, optimizer, data, config, generator, timing, device, source.n_outputs == 1, teacher_logits, frozen
        )
        curve, best, stopped_early = _run_epochs(run, progress)
    return _result(run, curve, best, stopped_early)


def _frozen_values(
    model: TabularModel, masks: dict[str, torch.Tensor] | None, device: torch.device
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per parameter, the half fine-tuning mask and the starting values it keeps (none without masks)."""
    frozen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if masks is not None:
        for name, parameter in model.named_parameters():
            mask = masks[name].to(device)
            frozen[name] = (mask, parameter.detach().clone())
    return frozen


def _run_epochs(
    run: _Round, progress: Callable[[Progress], None] | None
) -> tuple[list[dict[str, Any]], _BestEpoch, bool]:
    """Train epoch after epoch until ``config.epochs`` or early stopping: the curve, the best
    epoch, and whether training stopped early."""
    config, timing = run.config, run.timing
    steps_per_epoch = max(math.ceil(len(run.data.train_batch) / config.batch_size), 1)
    total_steps = steps_per_epoch * config.epochs
    step = 0
    lr = learning_rate(0, total_steps, config)
    curve: list[dict[str, Any]] = []
    best = _BestEpoch()
    stopped_early = False
    for epoch in range(1, config.epochs + 1):
        epoch_clock = timing.now()
        run.model.train()
        train_loss, lr, step = _train_epoch(run, step, total_steps, lr)
        clock = timing.now()
        point: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
        point.update(_validate_epoch(run, epoch, best))
        timing.compute += timing.now() - clock
        point["seconds"] = timing.now() - epoch_clock
        curve.append(point)
        stopped_early = config.patience is not None and best.epochs_without_improvement >= config.patience
        if progress is not None:
            progress(Progress(fraction=1.0 if stopped_early else epoch / config.epochs, epoch=epoch, loss=train_loss))
        if stopped_early:
            break
    return curve, best, stopped_early


def _train_epoch(run: _Round, step: int, total_steps: int, lr: float) -> tuple[float, float, int]:
    """One pass over the training rows in a fresh order: mean training loss, last learning rate
    and the step count after it."""
    data, config, timing = run.data, run.config, run.timing
    n_train = len(data.train_batch)
    clock = timing.now()
    order = torch.randperm(n_train, generator=run.generator).to(run.device)
    timing.data += timing.now() - clock
    loss_sum, rows_seen = 0.0, 0
    for start in range(0, n_train, config.batch_size):
        clock = timing.now()
        index = order[start : start + config.batch_size]
        batch, labels = data.train_batch.select(index), data.train_labels[index]
        batch_teacher = run.teacher_logits[index] if run.teacher_logits is not None else None
        timing.data += timing.now() - clock

        clock = timing.now()
        lr = learning_rate(step, total_steps, config)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        loss = _optimizer_step(run, batch, labels, batch_teacher)
        # .item() synchronises with the device once per step; it also makes the compute clock
        # honest on CUDA, where kernels run asynchronously.
        loss_sum += loss.item() * len(index)
        rows_seen += len(index)
        step += 1
        timing.compute += timing.now() - clock
    return loss_sum / max(rows_seen, 1), lr, step


def _optimizer_step(
    run: _Round, batch: TabularBatch, labels: torch.Tensor, batch_teacher: torch.Tensor | None
) -> torch.Tensor:
    """Forward, loss (task plus focal distillation), backward and one optimiser step; the loss."""
    config, model = run.config, run.model
    logits = model(batch)
    loss = _task_loss(logits, labels, run.binary)
    if batch_teacher is not None:
        loss = loss + config.distill_weight * focal_distillation_loss(
            logits,
            batch_teacher,
            labels,
            alpha=config.distill_alpha,
            beta=config.distill_beta,
            temperature=config.temperature,
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.frozen:
        _mask_gradients(model, run.frozen)
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    run.optimizer.step()
    if run.frozen:
        _restore_frozen(model, run.frozen)
    return loss


def _validate_epoch(run: _Round, epoch: int, best: _BestEpoch) -> dict[str, Any]:
    """The epoch's validation numbers for the curve; updates ``best`` (early stopping's record)."""
    data = run.data
    if not data.n_validation:
        best.epoch = epoch
        return {"val_loss": None, "val_auc": None, "val_accuracy": None}
    val_loss, val_auc, val_accuracy = _validate(run.model, data.validation_batch, data.validation_labels, run.binary)
    if val_loss < best.loss:
        best.loss, best.epoch, best.epochs_without_improvement = val_loss, epoch, 0
        if run.config.restore_best:
            best.state = {k: v.detach().clone() for k, v in run.model.state_dict().items()}
    else:
        best.epochs_without_improvement += 1
    return {"val_loss": val_loss, "val_auc": val_auc, "val_accuracy": val_accuracy}


def _result(run: _Round, curve: list[dict[str, Any]], best: _BestEpoch, stopped_early: bool) -> TrainResult:
    """The round's outcome: the best (or last) epoch's weights on the CPU, the curve and timings."""
    model, data, timing = run.model, run.data, run.timing
    if best.state is not None:
        model.load_state_dict(best.state)
        best_epoch = best.epoch
    else:
        best_epoch = curve[-1]["epoch"]
    state_dict = {key: value.detach().to("cpu").clone() for key, value in model.state_dict().items()}
    n_train = len(data.train_batch)
    seconds = timing.data + timing.compute
    return TrainResult(
        state_dict=state_dict,
        curve=curve,
        best_epoch=best_epoch,
        device=str(run.device),
        samples_per_second=n_train * len(curve) / seconds if seconds > 0 else 0.0,
        seconds_data=timing.data,
        seconds_compute=timing.compute,
        n_train=n_train,
        n_replay=data.n_replay,
        n_validation=data.n_validation,
        validation_index=data.validation_index,
        stopped_early=stopped_early,
        config=_config_dict(run.config),
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


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}
