"""Feature schemas, preprocessing statistics and the encoder from JSON rows to tensors.

Three plain-JSON formats meet here:

* a deployment's **feature schema**, ``[{"name": "dep_delay", "type": "numeric"},
  {"name": "carrier", "type": "categorical"}, ...]``;
* a model version's **preprocessing stats**, ``{"numeric": {"dep_delay": {"mean": 1.2, "std": 3.4}},
  "categorical": {"carrier": {"vocab": ["AA", "UA"]}}}``;
* **rows**, one ``{feature name: value}`` object per event, as the predict API receives them.

A schema entry may add ``"nullable": true``; then ``null`` (or NaN, which the ingest API reads too) is a
*missing value*, not an error. A missing number becomes its training mean (0 once standardised)
plus a missing-indicator input (1.0 when missing, else 0.0): the indicators follow the numeric
columns, one per nullable numeric feature in schema order, so a model learns what "missing" means
rather than reading it as an average value. A missing category is a category of its own, ``null``
in the vocab, or the unknown bucket when training saw none. The key must still be in the row.

Categorical index 0 is the *unknown bucket*: vocab item ``i`` maps to ``i + 1``, and a value the vocab
does not know maps to 0. JSON clients send categories as strings, integers or booleans; they are
matched by their string form (``str(7) == "7"``, booleans as ``"true"``/``"false"``, the JSON spelling),
so a vocab fitted on ``7`` also matches ``"7"``.

A categorical column's stats may carry ``"unknown_buckets": B`` (1 when absent). With ``B > 1`` the
unknown values share ``B`` buckets instead of one: an unknown value goes to index
``zlib.crc32(utf-8 string form) % B`` (stable across processes, unlike ``hash()``), and vocab item
``i`` to ``i + B``, so distinct unseen users or products are not all scored alike. ``B == 1`` is the
layout above, unchanged. Either way new vocab items are appended after the existing indexes, which
is what lets a retrain grow a vocabulary (adaptive.ml.vocab).
"""

from __future__ import annotations

import math
import numbers
import zlib
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
# Most shared buckets a column's unknown values may hash into: each is an embedding row that only
# unknown values train, and a few hundred already keep most unseen values apart.
MAX_UNKNOWN_BUCKETS: Final = 1024


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
    """The features of a deployment: all names in the given order, the names of each type, and the
    names of the features that accept missing values (``nullable``)."""

    names: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    nullable: frozenset[str] = frozenset()

    @property
    def nullable_numeric(self) -> tuple[str, ...]:
        """The nullable numeric features in schema order: one missing-indicator input each."""
        return tuple(name for name in self.numeric if name in self.nullable)

    def to_json(self) -> list[dict[str, str | bool]]:
        """Return the schema in its JSON form; ``parse_schema(s.to_json()) == s``.

        ``"nullable"`` is written only when true, so a schema without nullable features reads back
        exactly as it was written before the key existed.
        """
        numeric = set(self.numeric)
        entries: list[dict[str, str | bool]] = []
        for name in self.names:
            entry: dict[str, str | bool] = {"name": name, "type": NUMERIC if name in numeric else CATEGORICAL}
            if name in self.nullable:
                entry["nullable"] = True
            entries.append(entry)
        return entries


# Drift tests a nullable feature's share of missing values as a column of its own, named so.
MISSING_SUFFIX: Final = " (missing)"


def missing_column(name: str) -> str:
    """The name of the drift column that holds the missing share of nullable feature ``name``."""
    return name + MISSING_SUFFIX


def parse_schema(obj: object) -> FeatureSchema:
    """Validate a schema in its JSON form and return it as a ``FeatureSchema``.

    Raises ``SchemaError`` naming the entry at fault. Entries may only carry ``name``, ``type`` and
    ``nullable`` (a boolean, false when absent): an unknown key is far more often a typo (``"typ"``)
    than intended metadata.
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
    nullable: list[str] = []
    seen: set[str] = set()
    for position, entry in enumerate(obj):
        if not isinstance(entry, dict):
            raise SchemaError(f"feature {position}: expected an object, got {_describe(entry)}")
        unknown = sorted(str(key) for key in entry if key not in ("name", "type", "nullable"))
        if unknown:
            raise SchemaError(f"feature {position}: unknown keys {', '.join(unknown)} (allowed: name, type, nullable)")
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
        is_nullable = entry.get("nullable", False)
        if type(is_nullable) is not bool:  # 1 or "true" would be a guess at what the client meant
            raise SchemaError(f"feature {name!r}: nullable must be true or false, got {is_nullable!r}")
        if is_nullable:
            if len(missing_column(name)) > MAX_NAME_LENGTH:
                raise SchemaError(
                    f"feature {name!r}: a nullable feature's name has at most "
                    f"{MAX_NAME_LENGTH - len(MISSING_SUFFIX)} characters (its drift column adds {MISSING_SUFFIX!r})"
                )
            nullable.append(name)
        seen.add(name)
        names.append(name)
        (numeric if kind == NUMERIC else categorical).append(name)
    for name in nullable:
        if missing_column(name) in seen:
            raise SchemaError(
                f"feature {missing_column(name)!r}: clashes with the drift column of nullable feature {name!r}"
            )
    return FeatureSchema(
        names=tuple(names), numeric=tuple(numeric), categorical=tuple(categorical), nullable=frozenset(nullable)
    )


# --- input spec and batches ---------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """What an architecture needs to know about its inputs.

    ``n_numeric`` counts the numeric features and the missing indicators of the nullable ones.
    ``cardinalities[j]`` is the number of embedding rows for categorical feature ``j``:
    ``len(vocab) + unknown_buckets`` (``+ 1`` by default, the extra row being the unknown bucket).
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
        n_numeric=len(schema.numeric) + len(schema.nullable_numeric),
        cardinalities=tuple(len(vocabs[name]["vocab"]) + unknown_buckets(vocabs[name]) for name in schema.categorical),
    )


def unknown_buckets(entry: dict[str, Any]) -> int:
    """How many shared buckets a (validated) categorical stats entry gives unknown values."""
    buckets: int = entry.get("unknown_buckets", 1)
    return buckets


def unknown_bucket(key: object, buckets: int) -> int:
    """The index of the bucket an unknown categorical key lands in, among ``buckets``.

    A CRC-32 of the key's UTF-8 string form: the same in every process and on every machine (Python's
    ``hash`` of a string is salted per process), so a value keeps its bucket across restarts.
    """
    if buckets == 1:
        return UNKNOWN_INDEX
    text = key if isinstance(key, str) else "null" if key is None else str(key)
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % buckets


@dataclass(frozen=True)
class TabularBatch:
    """Encoded rows: standardised numeric features and categorical indices, one row per event.

    ``numeric`` is float [N, n_numeric] and ``categorical`` int64 [N, n_categorical], in the order of
    ``FeatureSchema.numeric`` (then one missing indicator per ``FeatureSchema.nullable_numeric``)
    and ``FeatureSchema.categorical``.
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
        _check_numeric_stats(name, sections[NUMERIC][name], nullable=name in schema.nullable)
    for name in schema.categorical:
        _check_categorical_stats(name, sections[CATEGORICAL][name], nullable=name in schema.nullable)


def _check_numeric_stats(name: str, entry: object, *, nullable: bool = False) -> None:
    # A nullable column may say which share of its training values was missing (informative only).
    allowed = {"mean", "std", "missing"} if nullable else {"mean", "std"}
    if not isinstance(entry, dict) or not {"mean", "std"} <= set(entry) <= allowed:
        if nullable:
            raise PreprocessingError(
                f"{name}: numeric stats must be an object with 'mean', 'std' and optionally 'missing'"
            )
        raise PreprocessingError(f"{name}: numeric stats must be an object with exactly 'mean' and 'std'")
    for key in ("mean", "std"):
        value = entry[key]
        if not is_float32(value):
            raise PreprocessingError(f"{name}: {key} must be a finite number (in float32), got {value!r}")
    if entry["std"] < 0:
        raise PreprocessingError(f"{name}: std must be >= 0, got {entry['std']!r}")
    missing = entry.get("missing", 0.0)
    if not _is_number(missing) or not 0.0 <= missing <= 1.0:
        raise PreprocessingError(f"{name}: missing must be a share between 0 and 1, got {missing!r}")


def _check_categorical_stats(name: str, entry: object, *, nullable: bool = False) -> None:
    if not isinstance(entry, dict) or "vocab" not in entry or not set(entry) <= {"vocab", "unknown_buckets"}:
        raise PreprocessingError(
            f"{name}: categorical stats must be an object with 'vocab' and optionally 'unknown_buckets'"
        )
    buckets = entry.get("unknown_buckets", 1)
    if not _is_int(buckets) or not 1 <= buckets <= MAX_UNKNOWN_BUCKETS:
        raise PreprocessingError(
            f"{name}: unknown_buckets must be an integer in 1..{MAX_UNKNOWN_BUCKETS}, got {buckets!r}"
        )
    vocab = entry["vocab"]
    if not isinstance(vocab, list):
        raise PreprocessingError(f"{name}: vocab must be a list of strings, got {_describe(vocab)}")
    seen: set[str | None] = set()
    for item in vocab:
        if item is None and nullable:
            pass  # the category of missing values
        elif not isinstance(item, str):
            hint = " (null only in a nullable feature's vocab)" if item is None else ""
            raise PreprocessingError(f"{name}: vocab items must be strings, got {item!r}{hint}")
        elif len(item) > MAX_CATEGORY_LENGTH:
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
    unknown_buckets: int | dict[str, int] = 1,
) -> dict[str, Any]:
    """Compute preprocessing stats from training rows.

    Numeric: mean and population standard deviation (0 for a constant column; the encoder then
    divides by 1). Categorical: values seen at least ``min_count`` times, most frequent first (ties by
    value, so the result does not depend on row order), at most ``max_vocab`` of them. A nullable
    numeric column's mean and std are those of its non-missing values (0 and 0 when all are
    missing) and ``"missing"`` is its share of missing values; a nullable categorical column counts
    missing as a value, ``None`` (JSON null) in its vocab. Rows are
    validated exactly as ``FeatureEncoder.encode`` validates them, so bad rows raise ``RowError``.
    ``unknown_buckets``: the shared buckets of unknown values, for every categorical column or per
    column name (absent names get 1); a column with 1 gets no ``unknown_buckets`` key.
    """
    buckets = _buckets_per_column(schema, unknown_buckets)
    if max_vocab is not None and (not _is_int(max_vocab) or max_vocab < 1):
        raise PreprocessingError(f"max_vocab must be a positive integer or None, got {max_vocab!r}")
    if not _is_int(min_count) or min_count < 1:
        raise PreprocessingError(f"min_count must be a positive integer, got {min_count!r}")
    if not rows:
        raise PreprocessingError("cannot fit preprocessing stats on zero rows")
    indexes = [_FirstSeenIndex() for _ in schema.categorical]
    raw, codes = _read_rows(schema, rows, indexes, [(-_FLOAT32_MAX, _FLOAT32_MAX)] * len(schema.numeric))

    numeric: dict[str, dict[str, float]] = {}
    indicators = dict(zip(schema.nullable_numeric, range(len(schema.numeric), raw.shape[1]), strict=True))
    for column, name in enumerate(schema.numeric):
        values = raw[:, column]
        missing_share: float | None = None
        if name in indicators:
            missing = raw[:, indicators[name]] == 1.0
            missing_share = float(missing.mean())
            values = values[~missing]
            if not values.size:  # nothing to standardise: the indicator alone carries the column
                numeric[name] = {"mean": 0.0, "std": 0.0, "missing": missing_share}
                continue
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
        if missing_share is not None:
            numeric[name]["missing"] = missing_share

    categorical: dict[str, dict[str, Any]] = {}
    for column, (name, index) in enumerate(zip(schema.categorical, indexes, strict=True)):
        counts = np.bincount(codes[:, column], minlength=len(index))
        # Ties by value, the missing value (None) after the strings, so the order is total.
        ranked = sorted(
            zip(index, counts.tolist(), strict=True),
            key=lambda item: (-item[1], item[0] is None, item[0] or ""),
        )
        vocab = [value for value, count in ranked if count >= min_count]
        categorical[name] = {"vocab": vocab if max_vocab is None else vocab[:max_vocab]}
        if buckets[name] > 1:
            categorical[name]["unknown_buckets"] = buckets[name]
    return {NUMERIC: numeric, CATEGORICAL: categorical}


def _buckets_per_column(schema: FeatureSchema, unknown_buckets: int | dict[str, int]) -> dict[str, int]:
    """``fit_preprocessing``'s ``unknown_buckets`` as one checked count per categorical column."""
    if isinstance(unknown_buckets, dict):
        strays = sorted(str(name) for name in unknown_buckets if name not in schema.categorical)
        if strays:
            raise PreprocessingError(f"unknown_buckets names {strays[0]!r}, which is not a categorical feature")
        wanted = {name: unknown_buckets.get(name, 1) for name in schema.categorical}
    else:
        wanted = dict.fromkeys(schema.categorical, unknown_buckets)
    for name, buckets in wanted.items():
        if not _is_int(buckets) or not 1 <= buckets <= MAX_UNKNOWN_BUCKETS:
            raise PreprocessingError(
                f"{name}: unknown_buckets must be an integer in 1..{MAX_UNKNOWN_BUCKETS}, got {buckets!r}"
            )
    return wanted


def category_counts(schema: FeatureSchema, rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """How often each categorical value (by its string form, as the encoder matches it) occurs in rows.

    Rows are validated as ``FeatureEncoder.encode`` validates them (numbers need only be finite in
    float32), so a bad row raises ``RowError``. Used to grow a vocabulary (adaptive.ml.vocab).
    """
    indexes = [_FirstSeenIndex() for _ in schema.categorical]
    _, codes = _read_rows(schema, rows, indexes, [(-_FLOAT32_MAX, _FLOAT32_MAX)] * len(schema.numeric))
    counts: dict[str, dict[str, int]] = {}
    for column, (name, index) in enumerate(zip(schema.categorical, indexes, strict=True)):
        per_code = np.bincount(codes[:, column], minlength=len(index)).tolist()
        counts[name] = {value: per_code[code] for value, code in index.items()}
    return counts


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
        self._indexes = tuple(_vocab_index(vocabs[name]) for name in schema.categorical)
        # Raw values must be finite float32 numbers within MAX_STANDARDISED training standard
        # deviations of the training mean (limits.py), checked per value while reading so the first
        # bad value in the batch is the one reported.
        with np.errstate(over="ignore"):  # a huge std overflows to inf: then only the float32 bounds apply
            span = self._std * MAX_STANDARDISED
            lows, highs = (self._mean - span).tolist(), (self._mean + span).tolist()
        self._bounds = [
            (max(low, -_FLOAT32_MAX), min(high, _FLOAT32_MAX)) for low, high in zip(lows, highs, strict=True)
        ]
        # A missing value is read as its column's training mean, so it standardises to exactly 0;
        # the indicator columns after the numeric ones pass through the arithmetic as they are.
        self._fills = {name: float(numeric_stats[name]["mean"]) for name in schema.nullable_numeric}
        if self._fills:
            self._mean = np.concatenate([self._mean, np.zeros(len(self._fills))])
            self._std = np.concatenate([self._std, np.ones(len(self._fills))])
        self.spec = InputSpec(
            n_numeric=len(schema.numeric) + len(self._fills),
            cardinalities=tuple(len(index) + index.buckets for index in self._indexes),
        )

    def encode(self, rows: list[dict[str, Any]]) -> TabularBatch:
        """Validate and encode ``rows``; raises ``RowError`` for the first invalid value."""
        raw, codes = _read_rows(self.schema, rows, self._indexes, self._bounds, self._fills)
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

    buckets = 1

    def __missing__(self, key: str) -> int:
        return UNKNOWN_INDEX


class _HashedVocabIndex(_VocabIndex):
    """Vocab lookup where unknown values hash into ``buckets`` shared buckets (``unknown_bucket``).

    Misses are not stored: a stream of distinct unseen values must not grow the index.
    """

    def __init__(self, mapping: dict[str, int], buckets: int) -> None:
        super().__init__(mapping)
        self.buckets = buckets

    def __missing__(self, key: str) -> int:
        if type(key) is str:  # what the encoder looks up; unknown_bucket inlined, it runs per unknown value
            return zlib.crc32(key.encode("utf-8", "surrogatepass")) % self.buckets
        return unknown_bucket(key, self.buckets)


def _vocab_index(entry: dict[str, Any]) -> _VocabIndex:
    """The lookup of a (validated) categorical stats entry: vocab item ``i`` -> ``i + buckets``."""
    buckets = unknown_buckets(entry)
    mapping = {value: i + buckets for i, value in enumerate(entry["vocab"])}
    return _VocabIndex(mapping) if buckets == 1 else _HashedVocabIndex(mapping, buckets)


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
    fills: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate rows and return raw numeric values (float64) and categorical codes (int64).

    Codes come from ``indexes[j][key]`` for categorical feature ``j``; numeric feature ``j`` must lie in
    ``bounds[j]`` (which also rules out NaN and infinities). One loop, schema order within a row, so the
    error raised is always the first problem in reading order.

    Missing values (None, NaN) of nullable features: a number is read as ``fills[name]`` (0.0 when not
    given) and sets its indicator, one column per ``schema.nullable_numeric`` after the numeric ones;
    a category is looked up as the key ``None``. Both checks sit in branches that valid values of
    other features never reach, so schemas without nullable features read as fast as before.
    """
    if not isinstance(rows, list):
        raise TypeError(f"rows must be a list, got {type(rows).__name__}")
    n_rows, n_numeric, n_categorical = len(rows), len(schema.numeric), len(schema.categorical)
    n_features = len(schema.names)
    # The numeric block of a row: its numeric values, then the missing indicators.
    width = n_numeric + len(schema.nullable_numeric)
    numeric: list[float] = [0.0] * (n_rows * width)
    # name -> (offset of its indicator in the row's block, value read in place of a missing one).
    missing_slots = {
        name: (n_numeric + m, (fills or {}).get(name, 0.0)) for m, name in enumerate(schema.nullable_numeric)
    }
    nullable = schema.nullable
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
                    # null is a missing value (NaN, below) in a nullable feature and an error elsewhere.
                    value = math.nan if value is None and name in missing_slots else _as_number(i, name, value)
                # One comparison rejects NaN and infinities too (NaN compares false).
                if not low <= value <= high:
                    if value != value and name in missing_slots:  # NaN, in a nullable feature: missing
                        flag, value = missing_slots[name]
                        numeric[numeric_base + flag] = 1.0
                    else:
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
                elif name in nullable and _is_missing(value):
                    key = None  # the vocab's key of the missing category (JSON null)
                else:
                    key = _as_category(i, name, value)
                categorical[categorical_base + column] = index[key]
        numeric_base += width
        categorical_base += n_categorical
    raw = np.array(numeric, dtype=np.float64).reshape(n_rows, width)
    codes = np.array(categorical, dtype=np.int64).reshape(n_rows, n_categorical)
    return raw, codes


def _is_missing(value: object) -> bool:
    """Whether a value stands for "missing": null, or a NaN from an in-process caller (pandas)."""
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value))


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
