"""``jsonable`` turns metric results into data that strict JSON (and PostgreSQL's jsonb) accepts."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np

from adaptive.ml.jsonsafe import jsonable


def test_numpy_values_become_python_values() -> None:
    data = jsonable({"n": np.int64(3), "auc": np.float32(0.5), "ok": np.bool_(True), "v": np.array([[1, 2]])})

    assert data == {"n": 3, "auc": 0.5, "ok": True, "v": [[1, 2]]}
    assert type(data["n"]) is int
    assert type(data["auc"]) is float
    assert type(data["ok"]) is bool


def test_non_finite_floats_become_none_at_any_depth() -> None:
    value = {"a": math.nan, "b": [math.inf, (np.float64(-np.inf), 1.5)], "c": np.array([np.nan, 2.0])}

    data = jsonable(value)

    assert data == {"a": None, "b": [None, [None, 1.5]], "c": [None, 2.0]}
    # allow_nan=False is what jsonb enforces: the result must pass it.
    json.dumps(data, allow_nan=False)


def test_tuples_become_lists_and_plain_values_are_kept() -> None:
    assert jsonable((1, "x", None, False, 2.5)) == [1, "x", None, False, 2.5]
    assert jsonable({"nested": {"t": (0, 1)}}) == {"nested": {"t": [0, 1]}}


def test_other_real_numbers_become_floats() -> None:
    data = jsonable({"third": Fraction(1, 3)})

    assert data == {"third": 1 / 3}
    assert type(data["third"]) is float
