"""Permutation importance: how much a model's loss grows when one feature's values are shuffled.

Drift in a column the model ignores is not worth an alarm; drift in the column it leans on most is.
Each feature's importance is the rise in log loss on a sample (the version's profile) when that
feature's values are permuted across rows, everything else kept, clipped at zero (a rise below
zero is noise) and divided by the sum over features, so the shares add up to 1 (equal shares when
no feature moves the loss). The permutation is seeded, so a version's importance is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from adaptive.ml.flips import log_loss

# Scores rows given as feature dicts: [N] P(y=1) or [N, C] class probabilities.
Scorer = Callable[[list[dict[str, Any]]], npt.NDArray[np.float64]]


def permutation_importance(
    score: Scorer,
    rows: Sequence[Mapping[str, Any]],
    labels: npt.ArrayLike,
    columns: Sequence[str],
    *,
    seed: int = 0,
) -> dict[str, float]:
    """Each column's share of the total rise in log loss when it is permuted (shares sum to 1)."""
    y = np.asarray(labels, dtype=np.int64)
    if len(rows) != y.size or y.size < 2:
        raise ValueError(f"need at least 2 rows with one label each, got {len(rows)} rows and {y.size} labels")
    base = [dict(row) for row in rows]
    baseline = log_loss(score(base), y)
    rng = np.random.default_rng(seed)
    rises: dict[str, float] = {}
    for column in columns:
        order = rng.permutation(len(base))
        values = [base[i].get(column) for i in order]
        permuted = [{**row, column: value} for row, value in zip(base, values, strict=True)]
        rises[column] = max(log_loss(score(permuted), y) - baseline, 0.0)
    total = sum(rises.values())
    if total <= 0:
        return {column: 1.0 / len(columns) for column in columns} if columns else {}
    return {column: round(rise / total, 6) for column, rise in rises.items()}
