"""The ranges every value crossing the API must fit, in the dtype it will be used in.

Models, keys and memories compute in float32, so a number is checked *after* conversion to float32:
``1e308`` is a finite float64 but an infinite float32, and one infinite key once made every later
read of a memory fail. Strings are limited to the database column that will hold them (or, where a
JSON document holds them, to a size no real value needs). docs/security.md lists these ranges.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

FLOAT32_MAX: Final = float(np.finfo(np.float32).max)

# A numeric feature may lie at most this many training standard deviations from the training mean.
# Far beyond any real data (a z-score of 1,000 is already a one-in-never event), and far enough below
# float32's range that no layer of a model can overflow on it: 1e30 or 2**70 used to score 1.0.
MAX_STANDARDISED: Final = 1e6

# Feature names and class names become DriftMetric.column (varchar 128).
MAX_NAME_LENGTH: Final = 128
# Features per deployment: each is a drift column per window.
MAX_FEATURES: Final = 2_000
# A categorical value (stored in the event's JSON, in vocabularies and in drift counts).
MAX_CATEGORY_LENGTH: Final = 256
# Event ids (Event.external_id, varchar 128).
MAX_ID_LENGTH: Final = 128
# A version's notes (free text; reasons for the audit log are limited to 2,000 by the API).
MAX_NOTES_LENGTH: Final = 10_000


def is_float32(value: object) -> bool:
    """True for a JSON number (not a boolean) that is finite once converted to float32."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and abs(float(value)) <= FLOAT32_MAX
    except OverflowError:  # an int too large for a float
        return False
