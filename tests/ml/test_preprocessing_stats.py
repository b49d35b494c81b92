"""fit_preprocessing, validate_preprocessing and input_spec: the stats stored with a model version."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest

from adaptive.ml.preprocessing import (
    FeatureEncoder,
    FeatureSchema,
    InputSpec,
    PreprocessingError,
    RowError,
    fit_preprocessing,
    input_spec,
    parse_schema,
    validate_preprocessing,
)
from tests.ml.samples import TRAINING_ROWS


def test_fit_computes_mean_and_population_std(stats: dict[str, Any]) -> None:
    assert stats["numeric"]["dep_delay"]["mean"] == pytest.approx(2.5)
    assert stats["numeric"]["dep_delay"]["std"] == pytest.approx(math.sqrt(1.25))


def test_fit_gives_a_constant_column_std_zero_exactly(stats: dict[str, Any]) -> None:
    assert stats["numeric"]["distance"] == {"mean": 100.0, "std": 0.0}


def test_fit_orders_vocab_by_frequency_then_value(stats: dict[str, Any]) -> None:
    assert stats["categorical"]["carrier"] == {"vocab": ["UA", "AA", "DL"]}
    # 7 and "7" are one category; true is spelt as in JSON.
    assert stats["categorical"]["hour"] == {"vocab": ["7", "18", "true"]}


def test_fit_output_is_valid_stats(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    validate_preprocessing(schema, stats)  # does not raise


def test_fit_applies_min_count_and_max_vocab(schema: FeatureSchema) -> None:
    assert fit_preprocessing(schema, TRAINING_ROWS, min_count=2)["categorical"]["carrier"]["vocab"] == ["UA"]
    assert fit_preprocessing(schema, TRAINING_ROWS, max_vocab=2)["categorical"]["carrier"]["vocab"] == [
        "UA",
        "AA",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_vocab": 0}, "max_vocab must be a positive integer"),
        ({"max_vocab": 2.5}, "max_vocab must be a positive integer"),
        ({"min_count": 0}, "min_count must be a positive integer"),
        ({"min_count": True}, "min_count must be a positive integer"),
    ],
)
def test_fit_rejects_bad_options(schema: FeatureSchema, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(PreprocessingError, match=message):
        fit_preprocessing(schema, TRAINING_ROWS, **kwargs)


def test_fit_refuses_zero_rows(schema: FeatureSchema) -> None:
    with pytest.raises(PreprocessingError, match="zero rows"):
        fit_preprocessing(schema, [])


def test_fit_validates_rows_like_the_encoder(schema: FeatureSchema) -> None:
    rows = [*TRAINING_ROWS, {**TRAINING_ROWS[0], "dep_delay": "late"}]

    with pytest.raises(RowError) as excinfo:
        fit_preprocessing(schema, rows)

    assert (excinfo.value.index, excinfo.value.field) == (4, "dep_delay")


def test_fit_rejects_values_outside_float32() -> None:
    schema = parse_schema([{"name": "x", "type": "numeric"}])

    with pytest.raises(RowError, match="row 1, 'x': number out of range"):
        fit_preprocessing(schema, [{"x": 3e38}, {"x": 1.7e308}])


def _broken(stats: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A deep copy of stats with the entry at path replaced (or deleted when value is ...)."""
    broken = copy.deepcopy(stats)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    if value is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("numeric", "dep_delay"), ..., "dep_delay: missing numeric stats"),
        (("categorical", "hour"), ..., "hour: missing categorical stats"),
        (("numeric", "wind"), {"mean": 0, "std": 1}, "wind: has numeric stats but is not in the schema"),
        (("categorical", "dep_delay"), {"vocab": []}, "dep_delay: is numeric in the schema but has categorical"),
        (("numeric", "dep_delay", "mean"), float("nan"), "dep_delay: mean must be a finite number"),
        (("numeric", "dep_delay", "mean"), True, "dep_delay: mean must be a finite number"),
        (("numeric", "dep_delay", "std"), "1", "dep_delay: std must be a finite number"),
        (("numeric", "dep_delay", "std"), float("inf"), "dep_delay: std must be a finite number"),
        (("numeric", "dep_delay", "std"), -0.5, "dep_delay: std must be >= 0"),
        (("numeric", "dep_delay", "std"), ..., "dep_delay: numeric stats must be an object with exactly"),
        (("numeric", "dep_delay", "median"), 1.0, "dep_delay: numeric stats must be an object with exactly"),
        (("numeric", "dep_delay"), [2.5, 1.1], "dep_delay: numeric stats must be an object"),
        (("categorical", "carrier", "vocab"), "UA", "carrier: vocab must be a list of strings"),
        (("categorical", "carrier", "vocab"), ["UA", 7], "carrier: vocab items must be strings, got 7"),
        (("categorical", "carrier", "vocab"), ["UA", "UA"], "carrier: vocab has duplicate value 'UA'"),
        (("categorical", "carrier"), {"vocab": [], "counts": []}, "carrier: categorical stats must be an object"),
        (("numeric",), [], "'numeric' must be an object, got array"),
        (("weights",), {}, "unknown sections weights"),
    ],
)
def test_validate_names_the_feature_at_fault(
    schema: FeatureSchema, stats: dict[str, Any], path: tuple[str, ...], value: Any, message: str
) -> None:
    with pytest.raises(PreprocessingError) as excinfo:
        validate_preprocessing(schema, _broken(stats, path, value))

    assert message in str(excinfo.value)


def test_validate_rejects_stats_that_are_not_an_object(schema: FeatureSchema) -> None:
    with pytest.raises(PreprocessingError, match="must be an object, got array"):
        validate_preprocessing(schema, [])


def test_validate_treats_a_missing_section_as_empty() -> None:
    schema = parse_schema([{"name": "x", "type": "numeric"}])

    validate_preprocessing(schema, {"numeric": {"x": {"mean": 0, "std": 1}}})  # does not raise


def test_encoder_refuses_invalid_stats(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    with pytest.raises(PreprocessingError, match="carrier: missing categorical stats"):
        FeatureEncoder(schema, _broken(stats, ("categorical", "carrier"), ...))


def test_input_spec_counts_the_unknown_bucket(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    spec = input_spec(schema, stats)

    assert spec == InputSpec(n_numeric=2, cardinalities=(4, 4))
    assert spec.n_categorical == 2
    assert FeatureEncoder(schema, stats).spec == spec
