"""Nullable features: missing values as data in the schema, the fitted stats, the encoder and drift."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from adaptive.ml.architectures import build_model
from adaptive.ml.drift.reference import DriftReference, assess_window, feature_columns
from adaptive.ml.preprocessing import (
    FeatureEncoder,
    FeatureSchema,
    PreprocessingError,
    RowError,
    SchemaError,
    fit_preprocessing,
    input_spec,
    parse_schema,
    validate_preprocessing,
)

# Nullable numerics on either side of a plain one, so indicator order is schema order, not type order.
SCHEMA_JSON: list[dict[str, Any]] = [
    {"name": "delay", "type": "numeric", "nullable": True},
    {"name": "distance", "type": "numeric"},
    {"name": "carrier", "type": "categorical", "nullable": True},
    {"name": "taxi", "type": "numeric", "nullable": True},
    {"name": "origin", "type": "categorical"},
]

# delay: 1 and 3 present (mean 2, std 1), one null and one NaN missing; taxi: 10 and 20, missing once;
# carrier: null twice (the most frequent value), "UA" twice, "AA" once.
TRAINING_ROWS: list[dict[str, Any]] = [
    {"delay": 1.0, "distance": 100.0, "carrier": None, "taxi": 10.0, "origin": "EWR"},
    {"delay": None, "distance": 200.0, "carrier": "UA", "taxi": None, "origin": "JFK"},
    {"delay": 3.0, "distance": 300.0, "carrier": "UA", "taxi": 20.0, "origin": "EWR"},
    {"delay": math.nan, "distance": 400.0, "carrier": None, "taxi": 20.0, "origin": "LGA"},
    {"delay": 2.0, "distance": 500.0, "carrier": "AA", "taxi": 10.0, "origin": "EWR"},
]


@pytest.fixture
def schema() -> FeatureSchema:
    return parse_schema(SCHEMA_JSON)


@pytest.fixture
def stats(schema: FeatureSchema) -> dict[str, Any]:
    return fit_preprocessing(schema, TRAINING_ROWS)


@pytest.fixture
def encoder(schema: FeatureSchema, stats: dict[str, Any]) -> FeatureEncoder:
    return FeatureEncoder(schema, stats)


def row(**overrides: Any) -> dict[str, Any]:
    return {"delay": 2.0, "distance": 300.0, "carrier": "UA", "taxi": 15.0, "origin": "EWR", **overrides}


# --- schema ---------------------------------------------------------------------------------------


def test_schema_records_nullable_features_and_writes_the_key_only_when_true() -> None:
    given = [*SCHEMA_JSON[:2], {"name": "origin", "type": "categorical", "nullable": False}]

    schema = parse_schema(given)

    assert schema.nullable == frozenset({"delay"}) and schema.nullable_numeric == ("delay",)
    assert schema.to_json() == [SCHEMA_JSON[0], SCHEMA_JSON[1], {"name": "origin", "type": "categorical"}]
    assert parse_schema(schema.to_json()) == schema


def test_a_schema_without_nullable_features_round_trips_unchanged() -> None:
    plain = [{"name": "delay", "type": "numeric"}, {"name": "carrier", "type": "categorical"}]

    assert parse_schema(plain).to_json() == plain
    assert parse_schema(plain).nullable == frozenset()


@pytest.mark.parametrize("value", [1, 0, "true", None, [True]])
def test_nullable_must_be_a_boolean(value: object) -> None:
    with pytest.raises(SchemaError, match=r"feature 'delay': nullable must be true or false"):
        parse_schema([{"name": "delay", "type": "numeric", "nullable": value}])


def test_a_feature_named_like_a_nullable_features_drift_column_is_refused() -> None:
    with pytest.raises(SchemaError, match=r"'delay \(missing\)': clashes with the drift column of nullable"):
        parse_schema([{"name": "delay (missing)", "type": "numeric"}, SCHEMA_JSON[0]])
    # Without the nullable flag there is no drift column, and both names are fine.
    assert parse_schema([{"name": "delay (missing)", "type": "numeric"}, {"name": "delay", "type": "numeric"}])


def test_a_nullable_features_name_leaves_room_for_its_drift_column() -> None:
    with pytest.raises(SchemaError, match="a nullable feature's name has at most 118 characters"):
        parse_schema([{"name": "x" * 119, "type": "numeric", "nullable": True}])
    assert parse_schema([{"name": "x" * 118, "type": "numeric", "nullable": True}])


# --- fitting and validating stats -------------------------------------------------------------------


def test_fit_standardises_nullable_numbers_on_present_values_and_records_the_missing_share(
    stats: dict[str, Any],
) -> None:
    assert stats["numeric"]["delay"] == {"mean": 2.0, "std": pytest.approx(math.sqrt(2 / 3)), "missing": 0.4}
    assert stats["numeric"]["taxi"] == {"mean": 15.0, "std": 5.0, "missing": 0.2}
    assert "missing" not in stats["numeric"]["distance"]


def test_fit_counts_a_missing_category_as_a_value_of_its_own(stats: dict[str, Any]) -> None:
    # null and "UA" tie at two: by value, null after the strings.
    assert stats["categorical"]["carrier"] == {"vocab": ["UA", None, "AA"]}


def test_a_missing_category_below_min_count_is_left_out_like_any_value(schema: FeatureSchema) -> None:
    rows = [row(carrier="UA"), row(carrier="UA"), row(carrier=None)]

    assert fit_preprocessing(schema, rows, min_count=2)["categorical"]["carrier"]["vocab"] == ["UA"]


def test_fit_on_a_column_that_is_always_missing_leaves_the_indicator_to_carry_it(schema: FeatureSchema) -> None:
    stats = fit_preprocessing(schema, [row(taxi=None), row(taxi=math.nan)])

    assert stats["numeric"]["taxi"] == {"mean": 0.0, "std": 0.0, "missing": 1.0}
    assert FeatureEncoder(schema, stats).encode([row(taxi=None)]).numeric[0, -1].item() == 1.0


def test_null_in_a_vocab_is_accepted_only_for_a_nullable_feature(stats: dict[str, Any]) -> None:
    plain = parse_schema([{**entry, "nullable": False} for entry in SCHEMA_JSON])
    stripped = {
        "numeric": {name: {"mean": 0.0, "std": 1.0} for name in plain.numeric},
        "categorical": stats["categorical"],
    }

    with pytest.raises(PreprocessingError, match=r"carrier: vocab items must be strings, got None \(null only in"):
        validate_preprocessing(plain, stripped)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"mean": 0.0, "std": 1.0, "missing": 1.5}, "delay: missing must be a share between 0 and 1, got 1.5"),
        ({"mean": 0.0, "std": 1.0, "missing": True}, "delay: missing must be a share between 0 and 1, got True"),
        ({"mean": 0.0, "std": 1.0, "missng": 0.1}, "delay: numeric stats must be an object with 'mean', 'std' and"),
    ],
)
def test_validate_checks_the_missing_share(stats: dict[str, Any], entry: dict[str, Any], message: str) -> None:
    schema = parse_schema(SCHEMA_JSON)
    broken = {**stats, "numeric": {**stats["numeric"], "delay": entry}}

    with pytest.raises(PreprocessingError, match=message):
        validate_preprocessing(schema, broken)


def test_a_missing_share_on_a_column_that_is_not_nullable_is_refused(stats: dict[str, Any]) -> None:
    broken = {**stats, "numeric": {**stats["numeric"], "distance": {"mean": 0.0, "std": 1.0, "missing": 0.0}}}

    with pytest.raises(PreprocessingError, match="distance: numeric stats must be an object with exactly"):
        validate_preprocessing(parse_schema(SCHEMA_JSON), broken)


def test_uploaded_stats_without_a_missing_share_are_valid(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    numeric = {name: {"mean": entry["mean"], "std": entry["std"]} for name, entry in stats["numeric"].items()}

    validate_preprocessing(schema, {**stats, "numeric": numeric})


# --- encoding -------------------------------------------------------------------------------------


def test_a_missing_number_is_the_training_mean_plus_an_indicator_after_the_numeric_columns(
    encoder: FeatureEncoder,
) -> None:
    batch = encoder.encode([row(delay=None), row(taxi=math.nan), row(delay=3.0, taxi=20.0)])

    # Columns: delay, distance, taxi (standardised), then the indicators of delay and taxi. The rows'
    # distance (300) and present taxi (15) are their training means, so they standardise to 0.
    assert batch.numeric[:2].tolist() == [[0.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]]
    assert batch.numeric[2].tolist() == pytest.approx([1 / math.sqrt(2 / 3), 0.0, 1.0, 0.0, 0.0], rel=1e-6)


@pytest.mark.parametrize("missing", [None, math.nan, np.float32("nan"), np.float64("nan")])
def test_every_spelling_of_missing_encodes_alike(encoder: FeatureEncoder, missing: object) -> None:
    batch = encoder.encode([row(delay=missing, carrier=missing)])

    assert batch.numeric[0, 0].item() == 0.0 and batch.numeric[0, 3].item() == 1.0
    assert batch.categorical[0, 0].item() == 2  # null is vocab item 1: index 1 + 1


def test_a_missing_category_goes_to_the_unknown_bucket_when_training_saw_none(schema: FeatureSchema) -> None:
    stats = fit_preprocessing(schema, [row(carrier="UA"), row(carrier="AA")])
    assert None not in stats["categorical"]["carrier"]["vocab"]

    batch = FeatureEncoder(schema, stats).encode([row(carrier=None), row(carrier="ZZ"), row(carrier="UA")])

    assert batch.categorical[:, 0].tolist() == [0, 0, 2]


@pytest.mark.parametrize(
    ("overrides", "field", "reason"),
    [
        ({"distance": None}, "distance", "expected a number, got null"),
        ({"distance": math.nan}, "distance", "must be a finite number, got nan"),
        ({"origin": None}, "origin", "expected a string, integer or boolean, got null"),
        ({"origin": math.nan}, "origin", "expected a string, integer or boolean, got floating-point number"),
        ({"delay": math.inf}, "delay", "must be a finite number, got inf"),
        ({"delay": "n/a"}, "delay", "expected a number, got string"),
        ({"carrier": 1.5}, "carrier", "expected a string, integer or boolean, got floating-point number"),
    ],
)
def test_null_and_nan_stay_errors_outside_nullable_features(
    encoder: FeatureEncoder, overrides: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(RowError) as excinfo:
        encoder.encode([row(), row(**overrides)])

    assert (excinfo.value.index, excinfo.value.field, excinfo.value.reason) == (1, field, reason)


def test_a_nullable_features_key_must_still_be_in_the_row(encoder: FeatureEncoder) -> None:
    incomplete = row()
    del incomplete["delay"]

    with pytest.raises(RowError, match="row 0, 'delay': missing"):
        encoder.encode([incomplete])


def test_the_input_spec_counts_the_indicators_and_a_model_runs_on_the_batch(
    schema: FeatureSchema, stats: dict[str, Any], encoder: FeatureEncoder
) -> None:
    assert input_spec(schema, stats) == encoder.spec
    assert encoder.spec.n_numeric == 5 and encoder.spec.cardinalities == (4, 4)
    torch.manual_seed(0)
    model = build_model("mlp", {"hidden": [8]}, encoder.spec, 1)

    logits = model(encoder.encode(TRAINING_ROWS))

    assert logits.shape[0] == len(TRAINING_ROWS) and torch.isfinite(logits).all()


def test_a_schema_without_nullable_features_encodes_as_before(schema: FeatureSchema) -> None:
    plain = parse_schema([{k: v for k, v in entry.items() if k != "nullable"} for entry in SCHEMA_JSON])
    rows = [row(delay=1.0, taxi=10.0, carrier="UA"), row(delay=3.0, taxi=20.0, carrier="AA")]
    stats = fit_preprocessing(plain, rows)

    batch = FeatureEncoder(plain, stats).encode(rows)

    assert stats["numeric"]["delay"] == {"mean": 2.0, "std": 1.0}
    assert batch.numeric.shape == (2, 3) and batch.numeric[:, 0].tolist() == [-1.0, 1.0]


# --- drift ----------------------------------------------------------------------------------------


def test_feature_columns_follow_each_nullable_feature_with_its_missing_share() -> None:
    features: dict[str, list[Any]] = {
        "delay": [1.0, None, math.nan],
        "carrier": ["UA", None, "AA"],
        "distance": [1.0, 2.0, 3.0],
    }

    columns = feature_columns(SCHEMA_JSON[:3], features)

    assert [(c.column, c.path, c.kind) for c in columns] == [
        ("delay", ("features", "delay"), "numeric"),
        ("delay (missing)", ("missing", "delay"), "categorical"),
        ("distance", ("features", "distance"), "numeric"),
        ("carrier", ("features", "carrier"), "categorical"),
        ("carrier (missing)", ("missing", "carrier"), "categorical"),
    ]
    assert columns[1].values == [0, 1, 1] and columns[4].values == [0, 1, 0]


def _profile_column(rng: np.random.Generator, n: int, missing_share: float) -> list[float | None]:
    values = rng.normal(10.0, 2.0, n)
    return [None if rng.random() < missing_share else float(v) for v in values]


def test_a_rise_in_the_missing_share_is_drift_while_the_present_values_are_not() -> None:
    # Given a reference where 5% of delays are missing, and a window from the same distribution
    # where 40% are: the missing share drifts, and the delays that are there do not.
    rng = np.random.default_rng(3)
    reference = DriftReference({"features": {"delay": _profile_column(rng, 2000, 0.05)}})
    window = {"delay": _profile_column(rng, 500, 0.40)}

    assessment = assess_window(reference, feature_columns(SCHEMA_JSON[:1], window))

    levels = {result.column: result.level for result in assessment.results}
    assert levels == {"delay": "ok", "delay (missing)": "drift"}
    assert [result.column for result in assessment.raising] == ["delay (missing)"]


def test_the_same_missing_share_is_not_drift() -> None:
    rng = np.random.default_rng(4)
    reference = DriftReference({"features": {"delay": _profile_column(rng, 2000, 0.10)}})
    window = {"delay": _profile_column(rng, 500, 0.10)}

    assessment = assess_window(reference, feature_columns(SCHEMA_JSON[:1], window))

    assert {result.column: result.level for result in assessment.results}["delay (missing)"] == "ok"
    assert assessment.status == "ok"
