"""A round's rows: labels checked, the replay sample drawn, the validation split held out."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adaptive.ml.architectures import TabularModel
from adaptive.ml.preprocessing import TabularBatch
from adaptive.ml.training.config import LabeledData, TrainConfig


@dataclass
class RoundData:
    """A round's rows on the training device: the training set (new rows plus the replay sample)
    and the validation split, which comes from the new rows only."""

    train_batch: TabularBatch
    train_labels: torch.Tensor
    validation_batch: TabularBatch
    validation_labels: torch.Tensor
    validation_index: torch.Tensor
    n_replay: int
    n_validation: int


def split_rows(
    source: TabularModel,
    new_batch: TabularBatch,
    new_labels: torch.Tensor,
    replay_data: LabeledData | None,
    config: TrainConfig,
    generator: torch.Generator,
    device: torch.device,
) -> RoundData:
    """Draw the replay sample and the validation split (in that order, from ``generator``)."""
    replay_batch, replay_labels, n_replay = _replay_sample(replay_data, len(new_batch), config, generator, source)
    n_validation = _validation_size(len(new_batch), config.validation_fraction)
    # Validation comes from the new data only: the candidate will serve recent traffic, and the
    # replay rows are there to be remembered, not to pick the epoch.
    permutation = torch.randperm(len(new_batch), generator=generator)
    validation_index, train_index = permutation[:n_validation], permutation[n_validation:]
    train_batch = _concat(new_batch.select(train_index), replay_batch)
    train_labels = torch.cat([new_labels[train_index], replay_labels])
    validation_batch, validation_labels = new_batch.select(validation_index), new_labels[validation_index]
    return RoundData(
        train_batch=train_batch.to(device),
        train_labels=train_labels.to(device),
        validation_batch=validation_batch.to(device),
        validation_labels=validation_labels.to(device),
        validation_index=validation_index,
        n_replay=n_replay,
        n_validation=n_validation,
    )


def check_data(data: LabeledData, name: str, model: TabularModel) -> tuple[TabularBatch, torch.Tensor]:
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
    batch, labels = check_data(replay_data, "replay_data", model)
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
