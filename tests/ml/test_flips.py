"""Negative-flip metrics on hand-computed cases, the statistics behind them, and the gate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from adaptive.ml.flips import (
    ClassFlips,
    evaluate_gate,
    flip_report,
    log_loss,
    mcnemar_exact,
    roc_auc,
    wilson_interval,
)

# Binary case, ten events. Predictions at threshold 0.5:
#   labels    1 1 1 0 0 0 1 0 1 0
#   old pred  1 1 0 0 0 1 1 0 0 0   -> right on 7 of 10
#   new pred  1 0 1 0 1 0 1 0 0 1   -> right on 6 of 10
# Negative flips (old right, new wrong): events 1, 4, 9. Positive flips: events 2, 5.
# The new version is 0.8 sure of event 1 (p = 0.2), 0.9 of event 4 and 0.6 of event 9.
LABELS = [1, 1, 1, 0, 0, 0, 1, 0, 1, 0]
OLD = [0.9, 0.7, 0.4, 0.1, 0.3, 0.6, 0.8, 0.2, 0.45, 0.35]
NEW = [0.95, 0.2, 0.7, 0.05, 0.9, 0.4, 0.85, 0.1, 0.3, 0.6]

# Multiclass case, six events, three classes (argmax):
#   labels    0 1 2 2 1 0
#   old pred  0 1 2 1 0 0   -> right on 4 of 6
#   new pred  0 2 2 0 1 1   -> right on 3 of 6
# Negative flips: events 1 and 5; positive flip: event 4. Event 3 is wrong for both versions but
# with different answers: MUSCLE's NFR_mc counts it, the plain NFR does not.
MC_LABELS = [0, 1, 2, 2, 1, 0]
MC_OLD_PRED = [0, 1, 2, 1, 0, 0]
MC_NEW_PRED = [0, 2, 2, 0, 1, 1]


def one_hot_proba(predicted: list[int], n_classes: int = 3, confidence: float = 0.8) -> np.ndarray:
    """Probability rows that put ``confidence`` on the predicted class and share the rest."""
    rest = (1.0 - confidence) / (n_classes - 1)
    proba = np.full((len(predicted), n_classes), rest)
    proba[np.arange(len(predicted)), predicted] = confidence
    return proba


def test_binary_report_matches_hand_computed_counts() -> None:
    report = flip_report(OLD, NEW, LABELS)

    assert report.task == "binary"
    assert (report.n, report.n_classes) == (10, 2)
    assert report.old_accuracy == pytest.approx(0.7)
    assert report.new_accuracy == pytest.approx(0.6)
    assert report.accuracy_delta == pytest.approx(-0.1)
    assert (report.negative_flips, report.positive_flips) == (3, 2)
    assert report.nfr == pytest.approx(0.3)
    assert report.pfr == pytest.approx(0.2)
    assert report.nfi == pytest.approx(3 / 4)
    # 0.3 / ((1 - 0.3) * 0.4)
    assert report.relative_nfr == pytest.approx(0.3 / 0.28)
    assert report.nfr_mc == pytest.approx(report.nfr)
    assert report.disagreement == pytest.approx(0.5)
    # 3 negative vs 2 positive flips: as balanced as 5 discordant pairs can be.
    assert report.mcnemar_p == pytest.approx(1.0)


def test_binary_per_class_table() -> None:
    report = flip_report(OLD, NEW, LABELS)

    assert report.per_class == (
        ClassFlips(label=0, n=5, old_accuracy=0.8, new_accuracy=0.6, negative_flips=2, positive_flips=1),
        ClassFlips(label=1, n=5, old_accuracy=0.6, new_accuracy=0.6, negative_flips=1, positive_flips=1),
    )


def test_negative_flip_examples_most_confident_first_or_in_event_order() -> None:
    assert flip_report(OLD, NEW, LABELS).negative_flip_examples == (4, 1, 9)
    assert flip_report(OLD, NEW, LABELS, example_order="first").negative_flip_examples == (1, 4, 9)
    assert flip_report(OLD, NEW, LABELS, max_examples=2).negative_flip_examples == (4, 1)


def test_each_version_uses_its_own_threshold() -> None:
    # At 0.5 both versions call the event positive; the new version's 0.7 threshold makes 0.6 negative.
    assert flip_report([0.6], [0.6], [1]).negative_flips == 0
    report = flip_report([0.6], [0.6], [1], old_threshold=0.5, new_threshold=0.7)

    assert report.negative_flips == 1
    assert (report.old_threshold, report.new_threshold) == (0.5, 0.7)


def test_multiclass_report_matches_hand_computed_counts() -> None:
    report = flip_report(one_hot_proba(MC_OLD_PRED), one_hot_proba(MC_NEW_PRED), MC_LABELS)

    assert report.task == "multiclass"
    assert report.n_classes == 3
    assert report.old_threshold is None and report.new_threshold is None
    assert report.old_accuracy == pytest.approx(4 / 6)
    assert report.new_accuracy == pytest.approx(3 / 6)
    assert (report.negative_flips, report.positive_flips) == (2, 1)
    assert report.nfr == pytest.approx(2 / 6)
    assert report.pfr == pytest.approx(1 / 6)
    assert report.nfi == pytest.approx(2 / 3)
    # (2/6) / ((4/6) * (3/6)) = 1: exactly as many flips as independent errors would give.
    assert report.relative_nfr == pytest.approx(1.0)
    # Events 1, 3 and 5: new wrong and a different answer from the old version.
    assert report.nfr_mc == pytest.approx(3 / 6)
    assert report.disagreement == pytest.approx(4 / 6)
    assert report.per_class == (
        ClassFlips(label=0, n=2, old_accuracy=1.0, new_accuracy=0.5, negative_flips=1, positive_flips=0),
        ClassFlips(label=1, n=2, old_accuracy=0.5, new_accuracy=0.5, negative_flips=1, positive_flips=1),
        ClassFlips(label=2, n=2, old_accuracy=0.5, new_accuracy=0.5, negative_flips=0, positive_flips=0),
    )


def test_multiclass_per_class_table_keeps_classes_without_events() -> None:
    report = flip_report(one_hot_proba([0, 1]), one_hot_proba([0, 1]), [0, 1])

    assert report.per_class[2] == ClassFlips(
        label=2, n=0, old_accuracy=None, new_accuracy=None, negative_flips=0, positive_flips=0
    )


def test_undefined_ratios_are_none() -> None:
    # The new version makes no error: no NFI, and relative NFR divides by err_new = 0.
    perfect = flip_report([0.2, 0.8], [0.1, 0.9], [0, 1])
    assert perfect.nfi is None
    assert perfect.relative_nfr is None
    # The old version is always wrong: (1 - err_old) = 0.
    assert flip_report([0.8, 0.2], [0.8, 0.2], [0, 1]).relative_nfr is None


def test_tensors_and_lists_give_the_same_report() -> None:
    from_lists = flip_report(OLD, NEW, LABELS)
    from_tensors = flip_report(
        torch.tensor(OLD, dtype=torch.float64), torch.tensor(NEW, dtype=torch.float64), torch.tensor(LABELS)
    )

    assert from_tensors == from_lists


def test_to_dict_is_plain_json() -> None:
    report = flip_report(one_hot_proba(MC_OLD_PRED), one_hot_proba(MC_NEW_PRED), MC_LABELS)

    data = json.loads(json.dumps(report.to_dict()))

    assert data["nfr"] == pytest.approx(2 / 6)
    assert data["nfr_interval"] == {"low": report.nfr_interval.low, "high": report.nfr_interval.high}
    assert data["per_class"][0] == {
        "label": 0,
        "n": 2,
        "old_accuracy": 1.0,
        "new_accuracy": 0.5,
        "negative_flips": 1,
        "positive_flips": 0,
    }
    assert data["negative_flip_examples"] == [1, 5]
    assert data["accuracy_delta"] == pytest.approx(-1 / 6)


@pytest.mark.parametrize(
    ("old", "new", "labels", "message"),
    [
        ([0.5, 0.5], [0.5], [0, 1], "differ in shape"),
        ([0.5, 0.5], [0.5, 0.5], [0, 1, 1], "labels must be"),
        ([0.5, 0.5], [0.5, 0.5], [0, 2], "class indexes"),
        ([], [], [], "zero events"),
        ([0.5, math.nan], [0.5, 0.5], [0, 1], "finite"),
    ],
)
def test_invalid_inputs_are_rejected(old: list[float], new: list[float], labels: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        flip_report(old, new, labels)


# --- statistics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Reference values, e.g. Newcombe (1998) Table I and any Wilson calculator.
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (1, 100, 0.0018, 0.0545),
        (81, 263, 0.2553, 0.3662),
    ],
)
def test_wilson_interval_known_values(successes: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, n)

    assert interval.low == pytest.approx(low, abs=5e-5)
    assert interval.high == pytest.approx(high, abs=5e-5)


def test_wilson_interval_without_events_is_uninformative() -> None:
    interval = wilson_interval(0, 0)

    assert (interval.low, interval.high) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),  # no discordant pairs: no evidence
        (10, 0, 2 * 0.5**10),  # all ten discordant pairs one way
        (8, 2, 2 * (45 + 10 + 1) / 1024),  # 2 * P(X >= 8), X ~ Bin(10, 1/2)
        (2, 8, 2 * (45 + 10 + 1) / 1024),  # symmetric
        (3, 2, 1.0),
    ],
)
def test_mcnemar_exact_known_values(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p)


def test_rank_auc_counts_ties_as_half() -> None:
    # Of the 4 (positive, negative) pairs, 3 are ordered correctly.
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    # Positive 0.5 ties negative 0.5 (half) and beats 0.2: (1 + 0.5) / 2.
    assert roc_auc([0.2, 0.5, 0.5], [0, 0, 1]) == pytest.approx(0.75)
    assert roc_auc([0.3, 0.4], [1, 1]) is None


def test_multiclass_auc_is_macro_one_vs_rest_over_present_classes() -> None:
    # Class 0 vs rest ranks perfectly (1.0); class 1 vs rest orders 3 of its 4 pairs (0.3 < 0.4 is
    # the miss): 0.75; class 2 never occurs and is left out.
    scores = np.array([[0.6, 0.4, 0.0], [0.8, 0.2, 0.0], [0.1, 0.3, 0.6], [0.2, 0.7, 0.1]])
    labels = [0, 0, 1, 1]

    assert roc_auc(scores, labels) == pytest.approx((1.0 + 0.75) / 2)
    assert roc_auc(scores[:2], [0, 0]) is None


def test_log_loss_binary_and_multiclass() -> None:
    assert log_loss([0.8, 0.4], [1, 0]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert log_loss([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], [0, 2]) == pytest.approx(-(math.log(0.7) + math.log(0.8)) / 2)
    # A certain wrong answer is clipped, not infinite.
    assert math.isfinite(log_loss([0.0], [1]))


# --- gates --------------------------------------------------------------------------------------


def test_gate_passes_when_metric_improves_and_flips_are_rare() -> None:
    labels = [1] * 500 + [0] * 500
    old = [0.6] * 450 + [0.4] * 50 + [0.4] * 450 + [0.6] * 50  # 90% right
    new = [0.7] * 480 + [0.4] * 20 + [0.3] * 480 + [0.6] * 20  # 96% right, no flips
    report = flip_report(old, new, labels)

    passed, reasons = evaluate_gate(report, min_metric_delta=0.01, max_nfr=0.01, metric="accuracy")

    assert report.negative_flips == 0
    assert passed
    assert reasons == [
        "pass: accuracy delta +0.0600 (0.9000 -> 0.9600) >= minimum +0.0100",
        f"pass: NFR upper bound {report.nfr_interval.high:.4f} (NFR 0.0000, 0/1000 negative flips, Wilson 95%) "
        "<= maximum 0.0100",
    ]


def test_gate_fails_on_the_nfr_upper_bound_not_the_point_estimate() -> None:
    # NFR 0.3 on ten events: the Wilson upper bound (0.6032) is what the maximum is compared with.
    report = flip_report(OLD, NEW, LABELS)

    passed, reasons = evaluate_gate(report, min_metric_delta=-0.2, max_nfr=0.5, metric="accuracy")

    assert not passed
    assert reasons[0] == "pass: accuracy delta -0.1000 (0.7000 -> 0.6000) >= minimum -0.2000"
    assert reasons[1] == ("fail: NFR upper bound 0.6032 (NFR 0.3000, 3/10 negative flips, Wilson 95%) > maximum 0.5000")


def test_gate_fails_when_the_auc_delta_is_too_small() -> None:
    report = flip_report(OLD, NEW, LABELS)
    assert report.auc_delta is not None

    passed, reasons = evaluate_gate(report, min_metric_delta=report.auc_delta + 0.01, max_nfr=1.0)

    assert not passed
    assert reasons[0].startswith(f"fail: auc delta {report.auc_delta:+.4f}")
    assert " < minimum " in reasons[0]
    assert reasons[1].startswith("pass: NFR upper bound")


def test_gate_fails_when_auc_is_undefined() -> None:
    report = flip_report([0.6, 0.7], [0.6, 0.8], [1, 1])

    passed, reasons = evaluate_gate(report, min_metric_delta=0.0, max_nfr=1.0)

    assert not passed
    assert reasons[0] == "fail: auc is undefined on this evaluation set (a single class among 2 events)"
