"""Small, hand-checkable sample data shared by the engine tests (no fixtures: import freely)."""

from __future__ import annotations

from typing import Any, Final

import torch

from adaptive.ml.preprocessing import InputSpec, TabularBatch

SCHEMA_JSON: Final[list[dict[str, str]]] = [
    {"name": "dep_delay", "type": "numeric"},
    {"name": "carrier", "type": "categorical"},
    {"name": "distance", "type": "numeric"},
    {"name": "hour", "type": "categorical"},
]

# Chosen so the stats are easy to check by hand: dep_delay has mean 2.5 and population std
# sqrt(1.25); distance is constant; carrier "UA" is the most frequent value while "AA" and "DL" tie
# and sort by value; hour arrives as 7 and "7" (the same category) and as true.
TRAINING_ROWS: Final[list[dict[str, Any]]] = [
    {"dep_delay": 1, "carrier": "UA", "distance": 100.0, "hour": 7},
    {"dep_delay": 2.0, "carrier": "AA", "distance": 100.0, "hour": "7"},
    {"dep_delay": 3, "carrier": "UA", "distance": 100.0, "hour": True},
    {"dep_delay": 4.0, "carrier": "DL", "distance": 100.0, "hour": 18},
]

# Marks a key make_row should remove.
DROP: Final = object()


def make_row(**overrides: Any) -> dict[str, Any]:
    """A valid row for SCHEMA_JSON with some values replaced, or removed when given DROP."""
    row: dict[str, Any] = {"dep_delay": 5.0, "carrier": "UA", "distance": 250, "hour": 7}
    for key, value in overrides.items():
        if value is DROP:
            del row[key]
        else:
            row[key] = value
    return row


# Three numeric features and two categorical ones with 4 and 3 known values (+1 unknown bucket).
SPEC: Final = InputSpec(n_numeric=3, cardinalities=(5, 4))


def random_batch(spec: InputSpec, n: int = 7, seed: int = 0) -> TabularBatch:
    """A reproducible batch of standard-normal numeric values and uniform categorical indices."""
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, spec.n_numeric, generator=generator)
    columns = [torch.randint(0, cardinality, (n,), generator=generator) for cardinality in spec.cardinalities]
    categorical = torch.stack(columns, dim=1) if columns else torch.zeros(n, 0, dtype=torch.int64)
    return TabularBatch(numeric, categorical)
