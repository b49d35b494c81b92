"""ReLoop2 error compensation: keys from a model, the error estimate and the blend (docs/design.md).

For a query with base score ``p_q`` and a memory readout (``y_bar``, ``p_bar``, ``support``):

    err    = gamma * (y_bar - p_q) + (1 - gamma) * (y_bar - p_bar)       (ReLoop2, error estimate)
    w      = support / (support + shrink)                                 (this project's shrinkage)
    p_comp = clamp(p_q + lambda * w * err, 0, 1)                          (ReLoop2, compensation)

With gamma = 1 and w = 1 this is the blend ``(1 - lambda) p_q + lambda y_bar``. The first term
compares the neighbours' labels with the model's current score for the query; the second with the
scores the model gave those neighbours, i.e. the model's recent error there. ``w`` is not in the
paper: it pulls an estimate resting on little evidence toward "no correction", so an empty or
sparse memory leaves the base score alone (compensation must never make a stable stream much
worse). Multiclass: the same on probability vectors, then clamped and renormalised. ``p_comp`` is
what the memory proposes; how much of it a deployment serves is learned from its labels by the
compensation gate (``adaptive.ml.gate``).

Keys: the model's last hidden layer ``h = model.embed(x)``, centred by its training mean and
L2-normalised. Centring matters: ReLU features are all >= 0, so uncentred keys crowd into one
orthant where every cosine is high and every random hyperplane splits them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, NamedTuple

import torch

from adaptive.ml.architectures import TabularModel, logits_to_proba
from adaptive.ml.memory import ErrorMemory, Readout
from adaptive.ml.preprocessing import TabularBatch

# Defaults for the exact memory, tuned on the dev streams (bench/RESULTS-stream-replay.md): lambda 0.7
# (inside the paper's 0.4-0.9), gamma 0.5 (half "neighbours' labels vs this score", half "vs the
# neighbours' own scores", which cancels the base model's bias in that region), shrink 2.
DEFAULT_LAMBDA: Final = 0.7
DEFAULT_GAMMA: Final = 0.5
# Support at which an estimate gets half weight. The exact memory's support is a kernel mass of at
# most about k; the sketch's is an attention-weighted bucket row count in the hundreds, so it needs a
# larger value (see default_config).
DEFAULT_SHRINK: Final = 2.0
SKETCH_LAMBDA: Final = 1.0
# The first-order sketch read estimates the neighbours' own scores as well as their labels, and its
# blend does best on their difference alone (gamma 0: err = y_bar - p_bar, the model's recent error
# around the query).
SKETCH_GAMMA: Final = 0.0
SKETCH_SHRINK: Final = 20.0
MAX_SHRINK: Final = 1e9

# Rows per forward pass when averaging keys over a training set.
KEY_MEAN_BATCH: Final = 8192
# Below this norm a centred key is treated as zero (F.normalize's eps): such a row sits exactly at
# the training mean and has no direction to compare.
KEY_NORM_EPS: Final = 1e-12


@dataclass(frozen=True)
class CompensationConfig:
    """How strongly the memory's error estimate moves a score.

    ``lam`` (lambda, in [0, 1]): the step toward the estimate; ``gamma`` (in [0, 1]): the mix of the
    two error terms (1 = compare neighbours' labels with the query's score only); ``shrink`` (>= 0):
    the support at which an estimate gets half weight (0 = no shrinkage, except that an empty
    readout never moves a score).
    """

    lam: float = DEFAULT_LAMBDA
    gamma: float = DEFAULT_GAMMA
    shrink: float = DEFAULT_SHRINK

    def __post_init__(self) -> None:
        for name, high in (("lam", 1.0), ("gamma", 1.0), ("shrink", MAX_SHRINK)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
            if not 0 <= value <= high:
                raise ValueError(f"{name} must be in [0, {high:g}], got {value!r}")
            # Frozen dataclass: plain floats even when given ints, so configs compare and serialise alike.
            object.__setattr__(self, name, float(value))


def default_config(memory_kind: str) -> CompensationConfig:
    """The tuned blend for a memory kind ("exact" or "sketch"): their supports differ in scale."""
    if memory_kind == "exact":
        return CompensationConfig()
    if memory_kind == "sketch":
        return CompensationConfig(lam=SKETCH_LAMBDA, gamma=SKETCH_GAMMA, shrink=SKETCH_SHRINK)
    raise ValueError(f"unknown memory kind {memory_kind!r}; expected 'exact' or 'sketch'")


def support_weight(support: torch.Tensor, shrink: float) -> torch.Tensor:
    """``w = support / (support + shrink)`` [N], in [0, 1]; 0 where support is 0, for any shrink."""
    if shrink == 0:
        # 0 / 0 for an empty readout: define "nothing known" as no correction.
        return (support > 0).to(support.dtype)
    return support / (support + shrink)


def compensate(p_base: torch.Tensor, readout: Readout, config: CompensationConfig) -> torch.Tensor:
    """Compensated probabilities, shaped like ``p_base`` ([N] binary, [N, C] multiclass).

    ``err = gamma (y_bar - p_q) + (1 - gamma) (y_bar - p_bar)`` and
    ``p_comp = clamp(p_q + lam * w * err, 0, 1)`` with ``w = support / (support + shrink)``;
    multiclass rows are then renormalised to sum to 1.
    """
    if p_base.shape != readout.y_bar.shape or p_base.shape != readout.p_bar.shape:
        raise ValueError(f"p_base {list(p_base.shape)} does not match the readout {list(readout.y_bar.shape)}")
    if readout.support.shape != p_base.shape[:1]:
        raise ValueError(f"support must have shape [{p_base.shape[0]}], got {list(readout.support.shape)}")
    # The python-level branches skip whole tensor ops on the serving path when gamma is 1 (the
    # neighbours' labels against this score only). The defaults are 0.5 for the exact memory and 0
    # for the sketch (default_config), and a deployment's gamma is its compensation_gamma setting.
    err = readout.y_bar - p_base
    if config.gamma != 1.0:
        err = config.gamma * err + (1.0 - config.gamma) * (readout.y_bar - readout.p_bar)
    weight = support_weight(readout.support, config.shrink)
    if p_base.dim() == 2:
        weight = weight.unsqueeze(1)
    p_comp = torch.addcmul(p_base, weight, err, value=config.lam).clamp_(0.0, 1.0)
    if p_base.dim() == 2:
        # With gamma = 1 every row is a convex mix of two distributions and already sums to 1;
        # with gamma < 1 the err vector still sums to 0, but clamping negatives can add mass.
        p_comp = p_comp / p_comp.sum(dim=1, keepdim=True).clamp_min(torch.finfo(p_comp.dtype).tiny)
    return p_comp


# --- keys -----------------------------------------------------------------------------------------


@contextmanager
def _evaluating(model: TabularModel) -> Iterator[None]:
    """Eval mode (no dropout: a key must not depend on the draw) and inference mode, then restore."""
    was_training = model.training
    if was_training:
        model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        if was_training:
            model.train()


def fit_key_mean(model: TabularModel, batch: TabularBatch, *, batch_size: int = KEY_MEAN_BATCH) -> torch.Tensor:
    """Mean of ``model.embed`` over the training ``batch``: the centre of the key space, [hidden_dim].

    Summed in float64 over chunks of ``batch_size`` rows, so a large training set neither needs one
    huge forward pass nor loses precision in the sum. Stored with a model version; the same mean
    must be used for every key that version writes or reads.
    """
    if len(batch) == 0:
        raise ValueError("cannot fit a key mean on an empty batch")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    total = torch.zeros(model.hidden_dim, dtype=torch.float64, device=batch.device)
    with _evaluating(model):
        for start in range(0, len(batch), batch_size):
            total += model.embed(batch[start : start + batch_size]).double().sum(dim=0)
    return (total / len(batch)).to(torch.float32)


def keys_from_hidden(h: torch.Tensor, key_mean: torch.Tensor) -> torch.Tensor:
    """Memory keys [N, D] from last-hidden-layer activations: ``normalise(h - key_mean)``."""
    if h.dim() != 2 or key_mean.shape != h.shape[1:]:
        raise ValueError(f"key_mean {list(key_mean.shape)} does not match hidden activations {list(h.shape)}")
    # F.normalize's arithmetic, x / max(|x|, eps), in one op fewer (it also expands the norms).
    centred = h - key_mean
    norms = torch.linalg.vector_norm(centred, dim=1, keepdim=True)
    if not bool(torch.isfinite(norms).all()):
        # The sum of squares of large finite values overflows float32 (41 values of 1e20 do);
        # float64 holds it, and the unit vector fits float32 again. Rows with an infinite or NaN
        # value stay non-finite: callers refuse them (adaptive.services.serving).
        wide = centred.double()
        norms64 = torch.linalg.vector_norm(wide, dim=1, keepdim=True).clamp_min(KEY_NORM_EPS)
        return (wide / norms64).to(centred.dtype)
    return centred / norms.clamp_min(KEY_NORM_EPS)


def extract_keys(model: TabularModel, batch: TabularBatch, key_mean: torch.Tensor) -> torch.Tensor:
    """Memory keys [N, hidden_dim] for ``batch``: centred, L2-normalised last hidden layer."""
    with _evaluating(model):
        return keys_from_hidden(model.embed(batch), key_mean)


# --- the model + memory pair used by the stream benchmark and the serving runtime -----------------


class Prediction(NamedTuple):
    """One batch's scores: base ``p_base``, compensated ``p_comp`` ([N] or [N, C]) and ``keys`` [N, D]."""

    p_base: torch.Tensor
    p_comp: torch.Tensor
    keys: torch.Tensor


class Compensator:
    """A model, its key mean, an error memory and a compensation config, used together.

    ``predict`` scores a batch and compensates it; once labels arrive, ``observe`` writes the
    batch's keys, labels and *base* scores into the memory (the memory learns the base model's
    errors, never its own corrections). The caller keeps ``keys`` and ``p_base`` from ``predict``
    until the labels come, so a row is never embedded twice.
    """

    def __init__(
        self,
        model: TabularModel,
        key_mean: torch.Tensor,
        memory: ErrorMemory,
        config: CompensationConfig | None = None,
    ) -> None:
        if memory.dim != model.hidden_dim:
            raise ValueError(f"memory dim {memory.dim} != model hidden_dim {model.hidden_dim}")
        if memory.n_outputs != model.n_outputs:
            raise ValueError(f"memory n_outputs {memory.n_outputs} != model n_outputs {model.n_outputs}")
        if key_mean.shape != (model.hidden_dim,):
            raise ValueError(f"key_mean must have shape [{model.hidden_dim}], got {list(key_mean.shape)}")
        self.model = model
        self.key_mean = key_mean
        self.memory = memory
        self.config = config if config is not None else CompensationConfig()

    def predict(self, batch: TabularBatch) -> Prediction:
        """Base and compensated probabilities and the keys, from one pass through ``embed``."""
        with _evaluating(self.model):
            # embed once: h gives both the base score (head) and the key, the reason the
            # architectures split forward into embed and head.
            h = self.model.embed(batch)
            p_base = logits_to_proba(self.model.head(h))
            keys = keys_from_hidden(h, self.key_mean)
            p_comp = compensate(p_base, self.memory.estimate(keys), self.config)
        return Prediction(p_base=p_base, p_comp=p_comp, keys=keys)

    def observe(self, keys: torch.Tensor, labels: torch.Tensor, p_base: torch.Tensor) -> None:
        """Write labeled rows (keys and base scores from ``predict``) into the memory."""
        self.memory.add(keys, labels, p_base)
