"""The compensation gate: how much of the memory's correction to serve, learned from labels.

The error memory proposes a corrected score ``p_full`` (``adaptive.ml.compensation.compensate`` at the
deployment's lambda). Whether that correction helps depends on the stream: on a drifting stream it
cuts the log loss a lot, on a stationary one it mostly adds the noise of a few neighbours' labels,
and while the memory is small it has little to go on. So the served score is

    p_served = p_base + s * (p_full - p_base),          s in STRENGTHS = {0, 0.1, ..., 1}

a convex mix of two probabilities (so still a probability, and a multiclass row still sums to 1),
and ``s`` is learned online from the labels, per deployment:

* Every labeled event tells, after the fact, the log loss that each strength would have had:
  ``loss_s = logloss(y, p_base + s (p_full - p_base))``. Predictions do not change the labels, so
  this counterfactual is exact, and it is known for every ``s`` whatever was served (the gate
  keeps learning while closed).
* For each ``s`` the gate keeps the exponentially discounted mean and variance of the paired
  difference ``d_s = loss_s - loss_0`` (half-life ``half_life`` labels, so old evidence fades when
  the stream changes), and the effective number of labels behind them.
* The confidence bound opens the gate, the point estimate chooses the strength: among the
  strengths whose upper bound on the mean loss change, ``mean(d_s) + z * se(d_s)``, is below zero
  (the labels show, with about 97.5% confidence, that serving them lowers the loss), it serves the
  one with the lowest mean. Where no strength's bound is below zero (no evidence that correcting
  helps, or too little of it), ``s = 0``: the base score, unchanged. Below ``min_support``
  effective labels the gate stays closed whatever the means say.
* Hysteresis: once open, the gate stays open, at the strength with the lowest mean, for as long as
  some strength's *mean* still shows a gain; it closes when none does. Opening takes proof,
  staying open only that the gain has not gone. A bad spell on a drifting stream (a storm day
  whose late flights the memory learns two batches too late) widens the bound for a long time; a
  gate that closed on it stayed shut through the good weeks that followed, and served worse than
  both the base model and the full correction over the first 10% of the demo's year.
  (Serving the strength with the best *bound* instead of the best mean was as safe on the controls
  but kept less of the gain: 90% instead of 98-100% on the gss stream.)

Labels arrive in batches whose events share one memory state, so neighbouring loss differences are
correlated and the plain standard error is too small; the variance is therefore computed over
*batch means* (one value per update call, weighted by its labels), the usual remedy for
autocorrelated streams. This module is pure (torch and math, no Django).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import torch

STRENGTHS: Final = tuple(round(i / 10, 1) for i in range(11))
# Evidence fades with a half-life of this many labels: long enough for a few thousand labels to
# decide, short enough that a correction that stopped helping is switched off within a few windows.
DEFAULT_HALF_LIFE: Final = 20_000.0
# One-sided 97.5% bound: serve a correction only when its gain is about two standard errors clear.
DEFAULT_Z: Final = 1.96
# Effective labels (and label batches) before any correction is served.
DEFAULT_MIN_SUPPORT: Final = 200.0
MIN_BATCHES: Final = 3.0
# Probabilities are clipped to [EPS, 1 - EPS] for the log loss, as adaptive.ml.flips does.
EPS: Final = 1e-7
STATE_VERSION: Final = 1


def _losses(p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-row log loss [N] of probabilities ``p`` ([N] binary, [N, C] multiclass)."""
    q = p.double().clamp(EPS, 1.0 - EPS)
    if q.dim() == 1:
        y = labels.double()
        return -(y * torch.log(q) + (1.0 - y) * torch.log1p(-q))
    return -torch.log(q.gather(1, labels.long().view(-1, 1)).squeeze(1))


@dataclass
class GateEvidence:
    """What the gate knows about one strength: discounted sums over labels and over label batches."""

    weight: float = 0.0  # discounted number of labels
    total: float = 0.0  # discounted sum of d_s
    batch_weight: float = 0.0  # discounted sum of batch sizes (the weights of the batch means)
    batch_weight_sq: float = 0.0
    batch_sq: float = 0.0  # discounted sum of size * batch_mean^2

    def mean(self) -> float:
        return self.total / self.weight if self.weight > 0 else 0.0

    def standard_error(self) -> float:
        """Standard error of the mean from the spread of batch means; inf with too few batches."""
        if self.batch_weight <= 0:
            return math.inf
        n_batches = self.batch_weight**2 / self.batch_weight_sq
        if n_batches < MIN_BATCHES:
            return math.inf
        mean = self.total / self.weight
        variance = max(self.batch_sq / self.batch_weight - mean * mean, 0.0)
        # Between-batch variance of a size-weighted mean: var * sum(w^2) / sum(w)^2, with the
        # small-sample correction n / (n - 1).
        return math.sqrt(variance * n_batches / (n_batches - 1) / n_batches)


@dataclass
class CompensationGate:
    """Online choice of the correction's strength from labeled events (see the module docstring)."""

    half_life: float = DEFAULT_HALF_LIFE
    z: float = DEFAULT_Z
    min_support: float = DEFAULT_MIN_SUPPORT
    evidence: list[GateEvidence] = field(default_factory=lambda: [GateEvidence() for _ in STRENGTHS])
    labels_seen: int = 0
    # Whether a gain has been shown since the gate last closed (see strength).
    is_open: bool = False

    def __post_init__(self) -> None:
        if not (self.half_life > 0 and math.isfinite(self.z) and self.z >= 0 and self.min_support >= 0):
            raise ValueError("half_life must be > 0, z and min_support >= 0")
        if len(self.evidence) != len(STRENGTHS):
            raise ValueError(f"a gate holds evidence for {len(STRENGTHS)} strengths, got {len(self.evidence)}")

    # --- learning -----------------------------------------------------------------------------

    def update(self, p_base: torch.Tensor, p_full: torch.Tensor, labels: torch.Tensor) -> None:
        """Take one batch of labeled events: their base and full-strength scores and labels."""
        n = int(labels.shape[0])
        if n == 0:
            return
        if p_base.shape != p_full.shape or p_base.shape[0] != n:
            raise ValueError(f"p_base {list(p_base.shape)}, p_full {list(p_full.shape)} and {n} labels differ")
        decay = 0.5 ** (1.0 / self.half_life)
        # Row i of n gets decay^(n-1-i): the newest label weighs 1, as if added one at a time.
        weights = decay ** torch.arange(n - 1, -1, -1, dtype=torch.float64)
        w_sum = float(weights.sum())
        fade = decay**n
        base_loss = _losses(p_base, labels)
        delta = (p_full - p_base).double()
        for strength, evidence in zip(STRENGTHS, self.evidence, strict=True):
            if strength == 0.0:
                d = torch.zeros(n, dtype=torch.float64)
            else:
                d = _losses(p_base.double() + strength * delta, labels) - base_loss
            total = float((weights * d).sum())
            batch_mean = total / w_sum
            evidence.weight = fade * evidence.weight + w_sum
            evidence.total = fade * evidence.total + total
            # The batch as a whole ages like its newest label; its mean enters with its size.
            evidence.batch_weight = fade * evidence.batch_weight + w_sum
            evidence.batch_weight_sq = fade * fade * evidence.batch_weight_sq + w_sum * w_sum
            evidence.batch_sq = fade * evidence.batch_sq + w_sum * batch_mean * batch_mean
        self.labels_seen += n
        self.is_open = self._decide()[0]

    # --- serving ------------------------------------------------------------------------------

    def bounds(self) -> list[float]:
        """Per strength, the upper confidence bound on the mean loss change (negative = helps)."""
        return [e.mean() + self.z * e.standard_error() if e.weight > 0 else math.inf for e in self.evidence]

    @property
    def support(self) -> float:
        """Effective (discounted) number of labels behind the estimates."""
        return self.evidence[0].weight

    def strength(self) -> float:
        """The strength to serve (see the module docstring): 0 unless a gain has been shown."""
        return self._decide()[1]

    def _decide(self) -> tuple[bool, float]:
        """(open, strength): open on a proven gain; once open, stay while the estimate shows one."""
        if self.support < self.min_support:
            return False, 0.0
        means = [e.mean() for e in self.evidence]
        proven = [(m, s) for s, m, bound in zip(STRENGTHS, means, self.bounds(), strict=True) if bound < 0]
        if proven:
            return True, min(proven)[1]
        if self.is_open:
            hopeful = [(m, s) for s, m in zip(STRENGTHS, means, strict=True) if s > 0 and m < 0]
            if hopeful:
                return True, min(hopeful)[1]
        return False, 0.0

    def summary(self) -> dict[str, Any]:
        """The gate as reported by the API and the dashboard (plain JSON)."""
        strength = self.strength()
        chosen = self.evidence[STRENGTHS.index(strength)]
        full = self.evidence[-1]
        return {
            "open": self.is_open,
            "strength": strength,
            "support": round(self.support, 1),
            "labels_seen": self.labels_seen,
            "loss_change": _finite(chosen.mean()),
            "loss_change_bound": _finite(self.bounds()[STRENGTHS.index(strength)]),
            "full_loss_change": _finite(full.mean()),
            "full_loss_change_bound": _finite(self.bounds()[-1]),
        }

    # --- persistence --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "labels_seen": self.labels_seen,
            "open": self.is_open,
            "evidence": [[e.weight, e.total, e.batch_weight, e.batch_weight_sq, e.batch_sq] for e in self.evidence],
        }

    @classmethod
    def from_state(cls, state: object, **params: Any) -> CompensationGate:
        """A gate with ``params`` and the evidence in ``state``; an empty or unreadable state starts over."""
        gate = cls(**params)
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            return gate
        rows = state.get("evidence")
        if not isinstance(rows, list) or len(rows) != len(STRENGTHS):
            return gate
        evidence = []
        for row in rows:
            if not (isinstance(row, list) and len(row) == 5 and all(_is_finite_number(v) for v in row)):
                return gate
            evidence.append(GateEvidence(*(float(v) for v in row)))
        gate.evidence = evidence
        labels_seen = state.get("labels_seen")
        gate.labels_seen = labels_seen if isinstance(labels_seen, int) and labels_seen >= 0 else 0
        gate.is_open = state.get("open") is True
        return gate


def blend(p_base: torch.Tensor, p_full: torch.Tensor, strength: float) -> torch.Tensor:
    """``p_base + strength * (p_full - p_base)``: the served score (no copy at 0 or 1)."""
    if strength <= 0.0:
        return p_base
    if strength >= 1.0:
        return p_full
    return torch.lerp(p_base, p_full, strength)


def _is_finite_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None
