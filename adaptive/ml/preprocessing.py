"""Feature schemas, preprocessing statistics and the encoder from JSON rows to tensors.

Three plain-JSON formats meet here:

* a deployment's **feature schema**, ``[{"name": "dep_delay", "type": "numeric"},
  {"name": "carrier", "type": "categorical"}, ...]``;
* a model version's **preprocessing stats**, ``{"numeric": {"dep_delay": {"mean": 1.2, "std": 3.4}},
  "categorical": {"carrier": {"vocab": ["AA", "UA"]}}}``;
* **rows**, one ``{feature name: value}`` object per event, as the predict API receives them.

Categorical index 0 is the *unknown bucket*: vocab item ``i`` maps to ``i + 1``, and a value the vocab
does not know maps to 0. JSON clients send categories as strings, integers or booleans; they are
matched by their string form (``str(7) == "7"``, booleans as ``"true"``/``"false"``, the JSON spelling),
so a vocab fitted on ``7`` also matches ``"7"``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch

from adaptive.ml.limits import (
    FLOAT32_MAX,
    MAX_CATEGORY_LENGTH,
    MAX_FEATURES,
    MAX_NAME_LENGTH,
    MAX_STANDARDISED,
    is_float32,
)

NUMERIC: Final = "numeric"
CATEGORICAL: Final = "categorical"
FEATURE_TYPES: Final = (NUMERIC, CATEGORICAL)

_FLOAT32_MAX: Final = FLOAT32_MAX

# Index of the bucket shared by every categorical value the vocab does not know.
UNKNOWN_INDEX: Final = 0


class SchemaError(ValueError):
    """A feature schema is malformed."""


class PreprocessingError(ValueError):
    """Preprocessing stats do not match a schema, or cannot be fitted."""


class RowError(ValueError):
    """One row of a batch is invalid.

    ``index`` is the row's position in the batch, ``field`` the feature at fault (``None`` when the
    row itself is not an object) and ``reason`` a short text meant to be shown to the API client.
    """

    def __init__(self, index: int, field: str | None, reason: str) -> None:
        self.index = index
        self.field = field
        self.reason = reason
        where = f"row {index}" if field is None else f"row {index}, {field!r}"
        super().__init__(f"{where}: {reason}")


# --- schema -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSchema:
    """The features of a deployment: all names in the given order, and the names of each type."""

    names: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    def to_json(self) -> list[dict[str, str]]:
        """Return the schema in its JSON form; ``parse_schema(s.to_json()) == s``."""
        numeric = set(self.numeric)
        return [{"name": name, "type": NUMERIC if name in numeric else CATEGORICAL} for name in self.names]


def parse_schema(obj: object) -> FeatureSchema:
    """Validate a schema in its JSON form and return it as a ``FeatureSchema``.

    Raises ``SchemaError`` naming the entry at fault. Entries may only carry ``name`` and ``type``:
    an unknown key is far more often a typo (``"typ"``) than intended metadata.
    """
    if not isinstance(obj, list):
        raise SchemaError(f"feature schema must be a list of features, got {_describe(obj)}")
    if not obj:
        raise SchemaError("feature schema must list at least one feature")
    if len(obj) > MAX_FEATURES:
        raise SchemaError(f"feature schema lists {len(obj)} features, over the limit of {MAX_FEATURES}")
    names: list[str] = []
    numeric: list[str] = []
    categorical: list[str] = []
    seen: set[str] = set()
    for position, entry in enumerate(obj):
        if not isinstance(entry, dict):
            raise SchemaError(f"feature {position}: expected an object, got {_describe(entry)}")
        unknown = sorted(str(key) for key in entry if key not in ("name", "type"))
        if unknown:
            raise SchemaError(f"feature {position}: unknown keys {', '.join(unknown)} (allowed: name, type)")
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SchemaError(f"feature {position}: name must be a non-empty string, got {name!r}")
        if len(name) > MAX_NAME_LENGTH or "\x00" in name:
            raise SchemaError(f"feature {position}: name must have at most {MAX_NAME_LENGTH} characters and no NUL")
        if name != name.strip():
            # " carrier" and "carrier" would look identical in the dashboard but never match a row.
            raise SchemaError(f"feature {position}: name {name!r} has leading or trailing whitespace")
        if name in seen:
            raise SchemaError(f"feature {position}: duplicate name {name!r}")
        kind = entry.get("type")
        if kind not in FEATURE_TYPES:
            raise SchemaError(f"feature {name!r}: type must be one of {', '.join(FEATURE_TYPES)}, got {kind!r}")
        seen.add(name)
        names.append(name)
        (numeric if kind == NUMERIC else categorical).append(name)
    return FeatureSchema(names=tuple(names), numeric=tuple(numeric), categorical=tuple(categorical))


# --- input spec and batches ---------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """What an architecture needs to know about its inputs.

    ``cardinalities[j]`` is the number of embedding rows for categorical feature ``j``:
    ``len(vocab) + 1``, the extra row being the unknown bucket.
    """

    n_numeric: int
    cardinalities: tuple[int, ...]

    @property
    def n_categorical(self) -> int:
        """Number of categorical features."""
        return len(self.cardinalities)


def input_spec(schema: FeatureSchema, stats: dict[str, Any]) -> InputSpec:
    """Derive the ``InputSpec`` of a schema and its (validated) preprocessing stats."""
    validate_preprocessing(schema, stats)
    vocabs = stats.get(CATEGORICAL, {})
    return InputSpec(
        n_numeric=len(schema.numeric),
        cardinalities=tuple(len(vocabs[name]["vocab"]) + 1 for name in schema.categorical),
    )


@dataclass(frozen=True)
class TabularBatch:
    """Encoded rows: standardised numeric features and categorical indices, one row per event.

    ``numeric`` is float [N, n_numeric] and ``categorical`` int64 [N, n_categorical], in the order of
    ``FeatureSchema.numeric`` and ``FeatureSchema.categorical``.
    """

    numeric: torch.Tensor
    categorical: torch.Tensor

    def __post_init__(self) -> None:
        if self.numeric.dim() != 2 or self.categorical.dim() != 2:
            raise ValueError("numeric and categorical must both be 2-d tensors")
        if self.numeric.shape[0] != self.categorical.shape[0]:
            raise ValueError(
                f"numeric has {self.numeric.shape[0]} rows but categorical has {self.categorical.shape[0]}"
            )
        if not self.numeric.is_floating_point():
            raise ValueError(f"numeric must be a floating-point tensor, got {self.numeric.dtype}")
        if self.categorical.dtype != torch.int64:
            raise ValueError(f"categorical must be an int64 tensor, got {self.categorical.dtype}")

    def __len__(self) -> int:
        return int(self.numeric.shape[0])

    def __getitem__(self, index: slice | torch.Tensor | Sequence[int]) -> TabularBatch:
        """Rows by slice, index tensor/list or boolean mask; always returns a batch."""
        if isinstance(index, int):
            # An int would drop the row dimension and give tensors no model accepts.
            raise TypeError("index a TabularBatch with a slice or indices, e.g. batch[i : i + 1]")
        if isinstance(index, slice):
            return TabularBatch(self.numeric[index], self.categorical[index])
        return self.select(index)

    @property
    def device(self) -> torch.device:
        """The device both tensors live on."""
        return self.numeric.device

    def select(self, index: torch.Tensor | Sequence[int]) -> TabularBatch:
        """Rows at ``index`` (an int64 index tensor or list, or a boolean mask of length N)."""
        if not isinstance(index, torch.Tensor):
            index = torch.as_tensor(index, dtype=torch.int64)
        index = index.to(self.numeric.device)
        return TabularBatch(self.numeric[index], self.categorical[index])

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TabularBatch:
        """The same batch on ``device``."""
        return TabularBatch(
            self.numeric.to(device, non_blocking=non_blocking),
            self.categorical.to(device, non_blocking=non_blocking),
        )


# --- preprocessing stats ------------------------------------------------------------------------


def validate_preprocessing(schema: FeatureSchema, stats: object) -> None:
    """Check that ``stats`` holds well-formed statistics for exactly the features of ``schema``.

    Raises ``PreprocessingError`` whose message starts with the feature at fault. A missing section
    (``"numeric"`` or ``"categorical"``) counts as empty, so a schema without categorical features
    does not need ``"categorical": {}``.
    """
    if not isinstance(stats, dict):
        raise PreprocessingError(f"preprocessing stats must be an object, got {_describe(stats)}")
    unknown = sorted(str(key) for key in stats if key not in FEATURE_TYPES)
    if unknown:
        raise PreprocessingError(
            f"preprocessing stats: unknown sections {', '.join(unknown)} (allowed: numeric, categorical)"
        )
    sections: dict[str, dict[Any, Any]] = {}
    for section in FEATURE_TYPES:
        part = stats.get(section, {})
        if not isinstance(part, dict):
            raise PreprocessingError(f"preprocessing stats: {section!r} must be an object, got {_describe(part)}")
        sections[section] = part
    expected = {NUMERIC: set(schema.numeric), CATEGORICAL: set(schema.categorical)}
    for section, other in ((NUMERIC, CATEGORICAL), (CATEGORICAL, NUMERIC)):
        for name in schema.numeric if section == NUMERIC else schema.categorical:
            if name in sections[section]:
                continue
            if name in sections[other]:
                raise PreprocessingError(f"{name}: is {section} in the schema but has {other} stats")
            raise PreprocessingError(f"{name}: missing {section} stats")
        for name in sections[section]:
            if name not in expected[section] and name not in expected[other]:
                raise PreprocessingError(f"{name}: has {section} stats but is not in the schema")
            if name in expected[other]:
                raise PreprocessingError(f"{name}: is {other} in the schema but has {section} stats")
    for name in schema.numeric:
        _check_numeric_stats(name, sections[NUMERIC][name])
    for name in schema.categorical:
        _check_categorical_stats(name, sections[CATEGORICAL][name])


def _check_numeric_stats(name: str, entry: object) -> None:
    if not isinstance(entry, dict) or set(entry) != {"mean", "std"}:
        raise PreprocessingError(f"{name}: numeric stats must be an object with exactly 'mean' and 'std'")
    for key in ("mean", "std"):
        value = entry[key]
        if not is_float32(value):
            raise PreprocessingError(f"{name}: {key} must be a finite number (in float32), got {value!r}")
    if entry["std"] < 0:
        raise PreprocessingError(f"{name}: std must be >= 0, got {entry['std']!r}")


def _check_categorical_stats(name: str, entry: object) -> None:
    if not isinstance(entry, dict) or set(entry) != {"vocab"}:
        raise PreprocessingError(f"{name}: categorical stats must be an object with exactly 'vocab'")
    vocab = entry["vocab"]
    if not isinstance(vocab, list):
        raise PreprocessingError(f"{name}: vocab must be a list of strings, got {_describe(vocab)}")
    seen: set[str] = set()
    for item in vocab:
        if not isinstance(item, str):
            raise PreprocessingError(f"{name}: vocab items must be strings, got {item!r}")
        if len(item) > MAX_CATEGORY_LENGTH:
            raise PreprocessingError(f"{name}: vocab items must have at most {MAX_CATEGORY_LENGTH} characters")
        if item in seen:
            raise PreprocessingError(f"{name}: vocab has duplicate value {item!r}")
        seen.add(item)


def fit_preprocessing(
    schema: FeatureSchema,
    rows: list[dict[str, Any]],
    *,
    max_vocab: int | None = None,
    min_count: int = 1,
) -> dict[str, Any]:
    """Compute preprocessing stats from training rows.

    Numeric: mean and population standard deviation (0 for a constant column; the encoder then
    divides by 1). Categorical: values seen at least ``min_count`` times, most frequent first (ties by
    value, so the result does not depend on row order), at most ``max_vocab`` of them. Rows are
    validated exactly as ``FeatureEncoder.encode`` validates them, so bad rows raise ``RowError``.
    """
    if max_vocab is not None and (not _is_int(max_vocab) or max_vocab < 1):
        raise PreprocessingError(f"max_vocab must be a positive integer or None, got {max_vocab!r}")
    if not _is_int(min_count) or min_count < 1:
        raise PreprocessingError(f"min_count must be a positive integer, got {min_count!r}")
    if not rows:
        raise PreprocessingError("cannot fit preprocessing stats on zero rows")
    indexes = [_FirstSeenIndex() for _ in schema.categorical]
    raw, codes = _read_rows(schema, rows, indexes, [(-_FLOAT32_MAX, _FLOAT32_MAX)] * len(schema.numeric))

    numeric: dict[str, dict[str, float]] = {}
    for column, name in enumerate(schema.numeric):
        values = raw[:, column]
        low, high = float(values.min()), float(values.max())
        if low == high:
            # np.std of a constant column can come out as 1e-17 rather than 0, and dividing by it
            # would blow up the first value that differs; make "constant" exact instead.
            mean, std = low, 0.0
        else:
            with np.errstate(over="ignore"):  # checked just below
                mean, std = float(values.mean()), float(values.std())
        if not (math.isfinite(mean) and math.isfinite(std)):
            raise PreprocessingError(f"{name}: values are too large to standardise")
        numeric[name] = {"mean": mean, "std": std}

    categorical: dict[str, dict[str, list[str]]] = {}
    for column, (name, index) in enumerate(zip(schema.categorical, indexes, strict=True)):
        counts = np.bincount(codes[:, column], minlength=len(index))
        ranked = sorted(zip(index, counts.tolist(), strict=True), key=lambda item: (-item[1], item[0]))
        vocab = [value for value, count in ranked if count >= min_count]
        categorical[name] = {"vocab": vocab if max_vocab is None else vocab[:max_vocab]}
    return {NUMERIC: numeric, CATEGORICAL: categorical}


# --- encoding -----------------------------------------------------------------------------------


class FeatureEncoder:
    """Turns rows into a ``TabularBatch`` with one model version's preprocessing stats.

    This is the hot path of the predict API: ``encode`` validates and encodes in one plain loop over
    the rows, writing into preallocated flat lists, and does the arithmetic on whole NumPy arrays.
    """

    def __init__(self, schema: FeatureSchema, stats: dict[str, Any]) -> None:
        validate_preprocessing(schema, stats)
        self.schema = schema
        numeric_stats = stats.get(NUMERIC, {})
        vocabs = stats.get(CATEGORICAL, {})
        self._mean = np.array([numeric_stats[name]["mean"] for name in schema.numeric], dtype=np.float64)
        # A constant training column has std 0: every value then maps to (x - mean) / 1.
        self._std = np.array([numeric_stats[name]["std"] or 1.0 for name in schema.numeric], dtype=np.float64)
        self._indexes = tuple(
            _VocabIndex({value: i + 1 for i, value in enumerate(vocabs[name]["vocab"])}) for name in schema.categorical
        )
        # Raw values must be finite float32 numbers within MAX_STANDARDISED training standard
        # deviations of the training mean (limits.py), checked per value while reading so the first
        # bad value in the batch is the one reported.
        with np.errstate(over="ignore"):  # a huge std overflows to inf: then only the float32 bounds apply
            span = self._std * MAX_STANDARDISED
            lows, highs = (self._mean - span).tolist(), (self._mean + span).tolist()
        self._bounds = [
            (max(low, -_FLOAT32_MAX), min(high, _FLOAT32_MAX)) for low, high in zip(lows, highs, strict=True)
        ]
        self.spec = InputSpec(
            n_numeric=len(schema.numeric),
            cardinalities=tuple(len(index) + 1 for index in self._indexes),
        )

    def encode(self, rows: list[dict[str, Any]]) -> TabularBatch:
        """Validate and encode ``rows``; raises ``RowError`` for the first invalid value."""
        raw, codes = _read_rows(self.schema, rows, self._indexes, self._bounds)
        scaled = ((raw - self._mean) / self._std).astype(np.float32)
        if not np.isfinite(scaled).all():
            # Unreachable given the bounds above; kept so a rounding surprise fails loudly, not as inf.
            row, column = (int(i) for i in np.argwhere(~np.isfinite(scaled))[0])
            raise RowError(row, self.schema.numeric[column], "number out of range")
        return TabularBatch(torch.from_numpy(scaled), torch.from_numpy(codes))


class _VocabIndex(dict[str, int]):
    """Vocab lookup where every unknown value lands in the unknown bucket.

    ``d[key]`` on a dict subclass stays on CPython's fast path and only calls ``__missing__`` on a
    miss, which is what lets the encoder and the fitter share one loop.
    """

    def __missing__(self, key: str) -> int:
        return UNKNOWN_INDEX


class _FirstSeenIndex(dict[str, int]):
    """Lookup that gives every new value the next free code (0, 1, 2, ...) while fitting."""

    def __missing__(self, key: str) -> int:
        code = self[key] = len(self)
        return code


def _read_rows(
    schema: FeatureSchema,
    rows: list[dict[str, Any]],
    indexes: Sequence[dict[str, int]],
    bounds: Sequence[tuple[float, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """Validate rows and return raw numeric values (float64) and categorical codes (int64).

    Codes come from ``indexes[j][key]`` for categorical feature ``j``; numeric feature ``j`` must lie in
    ``bounds[j]`` (which also rules out NaN and infinities). One loop, schema order within a row, so the
    error raised is always the first problem in reading order.
    """
    if not isinstance(rows, list):
        raise TypeError(f"rows must be a list, got {type(rows).__name__}")
    n_rows, n_numeric, n_categorical = len(rows), len(schema.numeric), len(schema.categorical)
    n_features = len(schema.names)
    numeric: list[float] = [0.0] * (n_rows * n_numeric)
    categorical: list[int] = [0] * (n_rows * n_categorical)
    # (name, column, vocab index or None for a numeric feature, low, high), in schema order.
    plan: list[tuple[str, int, dict[str, int] | None, float, float]] = []
    numeric_columns = {name: column for column, name in enumerate(schema.numeric)}
    categorical_columns = {name: column for column, name in enumerate(schema.categorical)}
    for name in schema.names:
        if name in numeric_columns:
            column = numeric_columns[name]
            plan.append((name, column, None, *bounds[column]))
        else:
            column = categorical_columns[name]
            plan.append((name, column, indexes[column], 0.0, 0.0))
    numeric_base = categorical_base = 0
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RowError(i, None, f"expected an object, got {_describe(row)}")
        if len(row) != n_features:
            raise _key_problem(schema, i, row)
        for name, column, index, low, high in plan:
            try:
                value = row[name]
            except KeyError:
                raise _key_problem(schema, i, row) from None
            # Exact type checks first: they are what JSON gives, they are fast, and they keep bool
            # (a subclass of int) from passing as a number or an integer category.
            kind = type(value)
            if index is None:
                if kind is not float and kind is not int:
                    value = _as_number(i, name, value)
                # One comparison rejects NaN and infinities too (NaN compares false).
                if not low <= value <= high:
                    raise _range_problem(i, name, value, low, high)
                numeric[numeric_base + column] = value
            else:
                if kind is str:
                    key = value
                    if len(key) > MAX_CATEGORY_LENGTH:
                        raise RowError(i, name, f"categories have at most {MAX_CATEGORY_LENGTH} characters")
                elif kind is bool:
                    key = "true" if value else "false"
                elif kind is int:
                    key = str(value)
                else:
                    key = _as_category(i, name, value)
                categorical[categorical_base + column] = index[key]
        numeric_base += n_numeric
        categorical_base += n_categorical
    raw = np.array(numeric, dtype=np.float64).reshape(n_rows, n_numeric)
    codes = np.array(categorical, dtype=np.int64).reshape(n_rows, n_categorical)
    return raw, codes


def _as_number(index: int, name: str, value: object) -> float:
    """A non-builtin number (numpy.float32, say) as a float; anything else is a RowError."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        try:
            return float(value)
        except OverflowError:
            raise RowError(index, name, "number out of range") from None
    raise RowError(index, name, f"expected a number, got {_describe(value)}")


def _as_category(index: int, name: str, value: object) -> str:
    """The key of a non-builtin category (numpy.int64, numpy.str_); floats and containers are errors."""
    if isinstance(value, str):
        if len(value) > MAX_CATEGORY_LENGTH:
            raise RowError(index, name, f"categories have at most {MAX_CATEGORY_LENGTH} characters")
        return str(value)
    if isinstance(value, np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    raise RowError(index, name, f"expected a string, integer or boolean, got {_describe(value)}")


def _range_problem(index: int, name: str, value: float, low: float, high: float) -> RowError:
    if isinstance(value, float) and not math.isfinite(value):
        return RowError(index, name, f"must be a finite number, got {value}")
    return RowError(
        index,
        name,
        f"number out of range: this model accepts {low:.6g} to {high:.6g} (finite in float32 and within "
        f"{MAX_STANDARDISED:g} standard deviations of its training mean)",
    )


def _key_problem(schema: FeatureSchema, index: int, row: dict[Any, Any]) -> RowError:
    """The first missing feature in schema order, else the first unknown key in the row."""
    for name in schema.names:
        if name not in row:
            return RowError(index, name, "missing")
    known = set(schema.names)
    for key in row:
        if key not in known:
            return RowError(index, str(key), "unknown feature")
    raise AssertionError("row has the expected keys")  # callers only come here when it does not


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(value: object) -> str:
    """The JSON name of a value's type, as an API client would understand it."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, numbers.Integral):
        return "integer"
    if isinstance(value, numbers.Real):
        return "floating-point number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
