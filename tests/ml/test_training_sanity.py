"""End to end on synthetic data: rows -> stats -> encoder -> model -> Adam, and the model learns."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from adaptive.ml.architectures import build_model
from adaptive.ml.preprocessing import FeatureEncoder, fit_preprocessing, input_spec, parse_schema

SCHEMA = parse_schema(
    [
        {"name": "x1", "type": "numeric"},
        {"name": "x2", "type": "numeric"},
        {"name": "segment", "type": "categorical"},
    ]
)
SEGMENT_EFFECT = {"a": 2.0, "b": -2.0, "c": 0.0}


def rank_auc(scores: list[float], labels: list[int]) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(score of a positive > score of a negative), ties 1/2."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for position in range(start, end + 1):  # tied scores share their average rank (1-based)
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    n_positive = sum(labels)
    n_negative = len(labels) - n_positive
    positive_rank_sum = sum(rank for rank, label in zip(ranks, labels, strict=True) if label == 1)
    return (positive_rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)


def test_rank_auc_on_a_hand_computed_example() -> None:
    # Of the 4 (positive, negative) pairs, 3 are ordered correctly.
    assert rank_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert rank_auc([0.5, 0.5], [0, 1]) == 0.5
    assert rank_auc([0.9, 0.1], [1, 0]) == 1.0


def make_rows(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    """Linearly separable rows; numeric features off-centre so that standardisation matters."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    labels: list[int] = []
    for _ in range(n):
        x1, x2, segment = rng.gauss(3.0, 2.0), rng.gauss(-1.0, 0.5), rng.choice("abc")
        logit = 1.0 * (x1 - 3.0) - 3.0 * (x2 + 1.0) + SEGMENT_EFFECT[segment]
        rows.append({"x1": x1, "x2": x2, "segment": segment})
        labels.append(int(logit > 0))
    return rows, labels


@pytest.mark.parametrize("architecture", ["mlp", "deepfm"])
def test_model_learns_a_separable_problem(architecture: str) -> None:
    train_rows, train_labels = make_rows(1000, seed=0)
    test_rows, test_labels = make_rows(500, seed=1)
    stats = fit_preprocessing(SCHEMA, train_rows)
    encoder = FeatureEncoder(SCHEMA, stats)
    train, test = encoder.encode(train_rows), encoder.encode(test_rows)
    y = torch.tensor(train_labels, dtype=torch.float32)
    torch.manual_seed(0)
    model = build_model(architecture, {"hidden": [32, 16]}, input_spec(SCHEMA, stats), n_outputs=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)

    model.train()
    for _ in range(100):
        index = torch.randint(0, len(train), (128,), generator=generator)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(train.select(index)).squeeze(1), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = model.predict_proba(test).tolist()

    assert rank_auc(scores, test_labels) > 0.9
