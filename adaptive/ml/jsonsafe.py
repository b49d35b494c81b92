"""Turn results into plain JSON data that ``json.dumps`` and PostgreSQL's ``jsonb`` both accept.

Metrics and reports are built from NumPy and dataclasses, so they hold values JSON has no word for:
NumPy scalars and arrays, tuples (from ``dataclasses.asdict``), other real numbers such as
``fractions.Fraction``, and NaN or infinities (a metric that is undefined, e.g. an AUC over one
class). Standard JSON has no NaN and ``jsonb`` rejects it, so a non-finite float becomes ``None``:
"no value", which is what it means.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data, recursively.

    Mappings become dicts (keys kept as they are), lists, tuples and NumPy arrays become lists,
    NumPy scalars become the Python scalar they hold, other real numbers become ``float``, and NaN
    and infinities become ``None``. Strings, bools, ints, finite floats and ``None`` are returned
    unchanged; anything else is returned as is for ``json.dumps`` to accept or refuse.
    """
    if isinstance(value, Mapping):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, int)):
        return jsonable(float(value))
    return value
