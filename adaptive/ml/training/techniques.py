"""The techniques of a continual round: the re-warmed learning rate schedule, half fine-tuning's
masks and focal distillation's loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from adaptive.ml.training.config import TrainConfig


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
