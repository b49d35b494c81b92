"""Fixtures for the engine tests: the sample schema, its fitted stats and an encoder."""

from __future__ import annotations

from typing import Any

import pytest

from adaptive.ml.preprocessing import FeatureEncoder, FeatureSchema, fit_preprocessing, parse_schema
from tests.ml.samples import SCHEMA_JSON, TRAINING_ROWS


@pytest.fixture
def schema() -> FeatureSchema:
    return parse_schema(SCHEMA_JSON)


@pytest.fixture
def stats(schema: FeatureSchema) -> dict[str, Any]:
    return fit_preprocessing(schema, TRAINING_ROWS)


@pytest.fixture
def encoder(schema: FeatureSchema, stats: dict[str, Any]) -> FeatureEncoder:
    return FeatureEncoder(schema, stats)
