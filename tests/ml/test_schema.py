"""parse_schema: the JSON feature schema of a deployment."""

from __future__ import annotations

import pytest

from adaptive.ml.preprocessing import FeatureSchema, SchemaError, parse_schema
from tests.ml.samples import SCHEMA_JSON


def test_parse_schema_keeps_order_and_splits_by_type() -> None:
    schema = parse_schema(SCHEMA_JSON)

    assert schema == FeatureSchema(
        names=("dep_delay", "carrier", "distance", "hour"),
        numeric=("dep_delay", "distance"),
        categorical=("carrier", "hour"),
    )


def test_schema_round_trips_through_json() -> None:
    schema = parse_schema(SCHEMA_JSON)

    assert schema.to_json() == SCHEMA_JSON
    assert parse_schema(schema.to_json()) == schema


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"name": "x", "type": "numeric"}, "must be a list of features, got object"),
        ("dep_delay", "must be a list of features, got string"),
        (None, "must be a list of features, got null"),
        ([], "at least one feature"),
        (["dep_delay"], "feature 0: expected an object, got string"),
        ([{"name": "a", "type": "numeric"}, {"name": "a", "type": "categorical"}], "feature 1: duplicate name 'a'"),
        ([{"name": "a", "type": "float"}], "feature 'a': type must be one of numeric, categorical, got 'float'"),
        ([{"name": "a"}], "feature 'a': type must be one of"),
        ([{"name": "", "type": "numeric"}], "feature 0: name must be a non-empty string"),
        ([{"name": "   ", "type": "numeric"}], "feature 0: name must be a non-empty string"),
        ([{"name": 3, "type": "numeric"}], "feature 0: name must be a non-empty string, got 3"),
        ([{"type": "numeric"}], "feature 0: name must be a non-empty string, got None"),
        ([{"name": " a", "type": "numeric"}], "leading or trailing whitespace"),
        ([{"name": "a", "typ": "numeric"}], "feature 0: unknown keys typ"),
    ],
)
def test_parse_schema_rejects_malformed_schemas(obj: object, message: str) -> None:
    with pytest.raises(SchemaError) as excinfo:
        parse_schema(obj)

    assert message in str(excinfo.value)


def test_schema_error_is_a_value_error() -> None:
    assert issubclass(SchemaError, ValueError)
