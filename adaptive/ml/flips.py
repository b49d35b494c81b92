"""Negative flips between two model versions on the same labeled events, and the gate they feed.

A *negative flip* is an event the old version got right and the new one gets wrong: the regression a
user notices even when the new version is better on average. The definitions follow two papers:

* Yan et al., "Positive-Congruent Training" (PCT, CVPR 2021): the negative flip rate
  ``NFR = #(old right, new wrong) / N``, its counterpart the positive flip rate ``PFR``, and the
  *relative* NFR ``NFR / ((1 - err_old) * err_new)``: the NFR divided by what it would be if old and
  new errors were independent, so that updates of different accuracy can be compared;
* Echterhoff et al., "MUSCLE: A Model Update Strategy for Compatible LLM Evolution" (2024): the
  *negative flip impact* ``NFI = #NF / #(new wrong)`` (the share of the new errors that are
  regressions) and ``NFR_mc``, the multiclass variant that counts the new version's errors on which
  the two versions *disagree*.

Predictions are probabilities: ``[N]`` positive-class probabilities for a binary task (each version
with its own decision threshold) or ``[N, C]`` class probabilities for a multiclass one (argmax).
Everything here is plain NumPy/SciPy; tensors are accepted and converted.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import torch

from adaptive.ml.jsonsafe import jsonable

# Two-sided 95%: the 0.975 quantile of the standard normal.
Z_95: Final = 1.959963984540054
DEFAULT_THRESHOLD: Final = 0.5
DEFAULT_MAX_EXAMPLES: Final = 20
# Probabilities are clipped to [EPS, 1 - EPS] before taking logs: one confidently wrong event must
# not turn the log loss into infinity (the same convention as scikit-learn's log_loss).
LOG_LOSS_EPS: Final = 1e-15

Predictions = torch.Tensor | npt.ArrayLike
ExampleOrder = Literal["confident", "first"]
GateMetric = Literal["auc", "accuracy"]


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval for a rate."""

    low: float
    high: float


@dataclass(frozen=True)
class ClassFlips:
    """Flip counts of the events whose *true* class is ``label``.

    Accuracies are ``None`` for a class with no events (``n == 0``).
    """

    label: int
    n: int
    old_accuracy: float | None
    new_accuracy: float | None
    negative_flips: int
    positive_flips: int


@dataclass(frozen=True)
class FlipReport:
    """How a new version's predictions differ from an old version's on the same ``n`` labeled events.

    Rates are fractions of ``n``. ``nfi`` is ``None`` when the new version makes no error, and
    ``relative_nfr`` when its denominator ``(1 - err_old) * err_new`` is zero. AUCs are ``None`` when
    the labels hold a single class. ``negative_flip_examples`` are event indexes (into the arrays that
    were passed), ordered as ``example_order`` says.
    """

    task: Literal["binary", "multiclass"]
    n: int
    n_classes: int
    old_threshold: float | None
    new_threshold: float | None
    old_accuracy: float
    new_accuracy: float
    negative_flips: int
    positive_flips: int
    nfr: float
    pfr: float
    nfr_interval: Interval
    pfr_interval: Interval
    nfi: float | None
    relative_nfr: float | None
    nfr_mc: float
    disagreement: float
    mcnemar_p: float
    old_auc: float | None
    new_auc: float | None
    old_log_loss: float
    new_log_loss: float
    per_class: tuple[ClassFlips, ...]
    negative_flip_examples: tuple[int, ...]
    example_order: ExampleOrder

    @property
    def accuracy_delta(self) -> float:
        """New minus old accuracy."""
        return self.new_accuracy - self.old_accuracy

    @property
    def auc_delta(self) -> float | None:
        """New minus old AUC, or ``None`` when either is undefined."""
        if self.old_auc is None or self.new_auc is None:
            return None
        return self.new_auc - self.old_auc

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (lists, ints, floats, strings and ``None``), with the two deltas included."""
        data = jsonable(dataclasses.asdict(self))
        data["accuracy_delta"] = self.accuracy_delta
        data["auc_delta"] = self.auc_delta
        return data


def flip_report(
    old: Predictions,
    new: Predictions,
    labels: Predictions,
    *,
    old_threshold: float = DEFAULT_THRESHOLD,
    new_threshold: float = DEFAULT_THRESHOLD,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    example_order: ExampleOrder = "confident",
) -> FlipReport:
    """Compare ``old`` and ``new`` predictions on the same labeled events.

    ``old`` and ``new`` are ``[N]`` positive-class probabilities (binary; an event is predicted
    positive when its probability is ``>=`` the version's threshold) or ``[N, C]`` class
    probabilities (multiclass; the prediction is the argmax, the thresholds are ignored and reported
    as ``None``). ``labels`` are ``[N]`` class indexes (0/1 for binary).

    ``example_order="confident"`` lists the negative flips the new version is most sure of first:
    those are the regressions a user is most likely to notice; ``"first"`` keeps event order.
    """
    old_p, new_p, y_int = _checked_inputs(old, new, labels, max_examples, example_order)
    binary, n = old_p.ndim == 1, int(y_int.shape[0])
    n_classes = 2 if binary else int(old_p.shape[1])
    old_pred, new_pred, new_confidence = _predicted_classes(old_p, new_p, old_threshold, new_threshold)
    old_right, new_right = old_pred == y_int, new_pred == y_int
    negative = old_right & ~new_right
    positive = ~old_right & new_right
    n_negative, n_positive = int(negative.sum()), int(positive.sum())
    n_new_wrong = int((~new_right).sum())
    err_old, err_new = 1.0 - float(old_right.mean()), 1.0 - float(new_right.mean())
    return FlipReport(
        task="binary" if binary else "multiclass",
        n=n,
        n_classes=n_classes,
        old_threshold=float(old_threshold) if binary else None,
        new_threshold=float(new_threshold) if binary else None,
        old_accuracy=1.0 - err_old,
        new_accuracy=1.0 - err_new,
        negative_flips=n_negative,
        positive_flips=n_positive,
        nfr=n_negative / n,
        pfr=n_positive / n,
        nfr_interval=wilson_interval(n_negative, n),
        pfr_interval=wilson_interval(n_positive, n),
        nfi=n_negative / n_new_wrong if n_new_wrong else None,
        relative_nfr=_relative_nfr(n_negative / n, err_old, err_new),
        # MUSCLE's NFR_mc: new errors on which the versions disagree. In the binary case a
        # disagreement where the new version is wrong means the old one was right, so NFR_mc == NFR;
        # with C > 2 classes, events both versions get wrong *differently* count too.
        nfr_mc=int((~new_right & (old_pred != new_pred)).sum()) / n,
        disagreement=float((old_pred != new_pred).mean()),
        mcnemar_p=mcnemar_exact(n_negative, n_positive),
        old_auc=roc_auc(old_p, y_int),
        new_auc=roc_auc(new_p, y_int),
        old_log_loss=log_loss(old_p, y_int),
        new_log_loss=log_loss(new_p, y_int),
        per_class=tuple(
            _class_flips(label, y_int == label, old_right, new_right, negative, positive) for label in range(n_classes)
        ),
        negative_flip_examples=_flip_examples(negative, new_confidence, example_order, max_examples),
        example_order=example_order,
    )


def _checked_inputs(
    old: Predictions, new: Predictions, labels: Predictions, max_examples: int, example_order: ExampleOrder
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``flip_report``'s inputs as arrays, checked: old and new probabilities and integer labels."""
    old_p, new_p, y = _as_array(old, "old"), _as_array(new, "new"), _as_array(labels, "labels")
    if old_p.shape != new_p.shape:
        raise ValueError(f"old and new predictions differ in shape: {old_p.shape} vs {new_p.shape}")
    if old_p.ndim not in (1, 2):
        raise ValueError(f"predictions must be [N] (binary) or [N, C] (multiclass), got shape {old_p.shape}")
    if y.ndim != 1 or y.shape[0] != old_p.shape[0]:
        raise ValueError(f"labels must be [N] with N = {old_p.shape[0]}, got shape {y.shape}")
    if y.shape[0] == 0:
        raise ValueError("cannot compare predictions on zero events")
    if max_examples < 0:
        raise ValueError(f"max_examples must be >= 0, got {max_examples}")
    if example_order not in ("confident", "first"):
        raise ValueError(f"example_order must be 'confident' or 'first', got {example_order!r}")
    n_classes = 2 if old_p.ndim == 1 else int(old_p.shape[1])
    if not np.all(np.isfinite(old_p)) or not np.all(np.isfinite(new_p)):
        raise ValueError("predictions must be finite")
    if not np.all((y == np.round(y)) & (y >= 0) & (y < n_classes)):
        raise ValueError(f"labels must be class indexes in 0..{n_classes - 1}")
    return old_p, new_p, y.astype(np.int64)


def _predicted_classes(
    old_p: npt.NDArray[np.float64], new_p: npt.NDArray[np.float64], old_threshold: float, new_threshold: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Each version's predicted class, and the new version's confidence in the class it predicted.

    Binary ([N]): positive at or above the version's threshold. Multiclass ([N, C]): the argmax.
    """
    if old_p.ndim == 1:
        old_pred = (old_p >= old_threshold).astype(np.int64)
        new_pred = (new_p >= new_threshold).astype(np.int64)
        return old_pred, new_pred, np.where(new_pred == 1, new_p, 1.0 - new_p)
    return old_p.argmax(axis=1), new_p.argmax(axis=1), new_p.max(axis=1)


def _relative_nfr(nfr: float, err_old: float, err_new: float) -> float | None:
    """PCT's relative NFR: if old and new errors were independent, P(old right, new wrong) would be
    ``(1 - err_old) * err_new``; 1.0 means "no better than chance". ``None`` when that is zero."""
    expected_independent = (1.0 - err_old) * err_new
    return nfr / expected_independent if expected_independent > 0 else None


def _flip_examples(
    negative: npt.NDArray[np.bool_], new_confidence: npt.NDArray[np.float64], example_order: ExampleOrder, limit: int
) -> tuple[int, ...]:
    """Up to ``limit`` negative-flip event indexes, most confident first or in event order."""
    order = np.flatnonzero(negative)
    if example_order == "confident":
        # Stable sort, so equally confident flips keep event order (deterministic output).
        order = order[np.argsort(-new_confidence[order], kind="stable")]
    return tuple(int(i) for i in order[:limit])


def wilson_interval(successes: int, n: int, z: float = Z_95) -> Interval:
    """Wilson score interval for a binomial rate ``successes / n`` (Wilson, 1927).

    Unlike the normal approximation it stays inside [0, 1] and does not collapse to a zero-width
    interval at 0 successes, which is exactly where a flip rate usually sits. ``n == 0`` gives the
    uninformative interval [0, 1].
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return Interval(0.0, 1.0)
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half_width = z / denominator * math.sqrt(p * (1.0 - p) / n + z2 / (4 * n * n))
    # Clamp away float round-off (e.g. 1.0000000000000002 at p = 1).
    return Interval(max(0.0, centre - half_width), min(1.0, centre + half_width))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar test on the discordant pairs: ``b`` negative and ``c`` positive flips.

    Under the null hypothesis that both versions are equally accurate, each discordant event is
    equally likely to be a negative or a positive flip, so ``b ~ Binomial(b + c, 1/2)``. With no
    discordant events there is no evidence either way: p = 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    # Imported here, not at the top: the training loop imports this module for ``roc_auc`` and must
    # run where only PyTorch and NumPy are installed (bench/gpu_train.py on a GPU host).
    from scipy.stats import binomtest

    return float(binomtest(b, b + c, 0.5, alternative="two-sided").pvalue)


def roc_auc(scores: Predictions, labels: Predictions) -> float | None:
    """ROC AUC: rank-based (Mann-Whitney) for ``[N]`` scores, macro one-vs-rest for ``[N, C]``.

    Tied scores count one half, as in the Mann-Whitney U statistic. Multiclass: the mean over the
    classes *present* in ``labels`` of the AUC of ``scores[:, c]`` for "class c vs the rest"; a class
    with no events has no AUC and is left out rather than failing the whole report. ``None`` when the
    labels hold fewer than two classes (no positive/negative pair to rank).
    """
    s, y = _as_array(scores, "scores"), _as_array(labels, "labels").astype(np.int64)
    if s.ndim == 1:
        return _binary_auc(s, y == 1)
    present = np.unique(y)
    if len(present) < 2:
        return None
    aucs = [_binary_auc(s[:, c], y == c) for c in present]
    return float(np.mean([a for a in aucs if a is not None]))


def log_loss(probabilities: Predictions, labels: Predictions) -> float:
    """Mean negative log-likelihood of the labels: binary for ``[N]``, categorical for ``[N, C]``."""
    p, y = _as_array(probabilities, "probabilities"), _as_array(labels, "labels").astype(np.int64)
    p_true = np.where(y == 1, p, 1.0 - p) if p.ndim == 1 else p[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(p_true, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS))))


def evaluate_gate(
    report: FlipReport,
    *,
    min_metric_delta: float,
    max_nfr: float,
    metric: GateMetric = "auc",
) -> tuple[bool, list[str]]:
    """Whether a candidate may replace the live version, and why.

    Two conditions, both required: the candidate's ``metric`` (new minus old) improves by at least
    ``min_metric_delta`` (negative values allow a bounded loss), and the *upper* end of the NFR's
    Wilson 95% interval is at most ``max_nfr``. The upper bound rather than the point estimate makes
    a small evaluation set fail safe: 0 flips out of 20 events do not prove a low flip rate.

    Returns ``(passed, reasons)``, one reason per condition, each saying pass/fail with the numbers.
    """
    if metric not in ("auc", "accuracy"):
        raise ValueError(f"metric must be 'auc' or 'accuracy', got {metric!r}")
    reasons: list[str] = []
    if metric == "auc":
        old_value, new_value = report.old_auc, report.new_auc
    else:
        old_value, new_value = report.old_accuracy, report.new_accuracy
    if old_value is None or new_value is None:
        metric_ok = False
        reasons.append(f"fail: {metric} is undefined on this evaluation set (a single class among {report.n} events)")
    else:
        delta = new_value - old_value
        metric_ok = delta >= min_metric_delta
        relation = ">=" if metric_ok else "<"
        reasons.append(
            f"{'pass' if metric_ok else 'fail'}: {metric} delta {delta:+.4f} ({old_value:.4f} -> {new_value:.4f}) "
            f"{relation} minimum {min_metric_delta:+.4f}"
        )
    upper = report.nfr_interval.high
    nfr_ok = upper <= max_nfr
    relation = "<=" if nfr_ok else ">"
    reasons.append(
        f"{'pass' if nfr_ok else 'fail'}: NFR upper bound {upper:.4f} (NFR {report.nfr:.4f}, "
        f"{report.negative_flips}/{report.n} negative flips, Wilson 95%) {relation} maximum {max_nfr:.4f}"
    )
    return metric_ok and nfr_ok, reasons


# --- helpers ------------------------------------------------------------------------------------


def _as_array(values: Predictions, name: str) -> npt.NDArray[np.float64]:
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError(f"{name} must be an array, got a scalar")
    return array


def _binary_auc(scores: npt.NDArray[np.float64], positive: npt.NDArray[np.bool_]) -> float | None:
    n_positive = int(positive.sum())
    n_negative = len(scores) - n_positive
    if n_positive == 0 or n_negative == 0:
        return None
    # Average ranks give ties half credit: AUC = (R+ - n+(n+ + 1)/2) / (n+ n-).
    ranks = _average_ranks(scores)
    rank_sum = float(ranks[positive].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def _average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1-based ranks, tied values sharing their mean rank: ``scipy.stats.rankdata(values)`` in NumPy.

    NumPy rather than SciPy so that ``roc_auc``, which the training loop's validation calls, needs
    no SciPy (see ``mcnemar_exact``). A NaN gives all-NaN ranks, as rankdata's default does.
    """
    if np.isnan(values).any():
        return np.full(len(values), np.nan)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # the rank of each tie group's last member
    ranks: npt.NDArray[np.float64] = (last - (counts - 1) / 2)[inverse]
    return ranks


def _class_flips(
    label: int,
    members: npt.NDArray[np.bool_],
    old_right: npt.NDArray[np.bool_],
    new_right: npt.NDArray[np.bool_],
    negative: npt.NDArray[np.bool_],
    positive: npt.NDArray[np.bool_],
) -> ClassFlips:
    n = int(members.sum())
    return ClassFlips(
        label=label,
        n=n,
        old_accuracy=float(old_right[members].mean()) if n else None,
        new_accuracy=float(new_right[members].mean()) if n else None,
        negative_flips=int(negative[members].sum()),
        positive_flips=int(positive[members].sum()),
    )
