"""FeatureEncoder.encode and TabularBatch: rows from the predict API to tensors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from adaptive.ml.preprocessing import FeatureEncoder, RowError, TabularBatch
from tests.ml.samples import DROP, TRAINING_ROWS, make_row


def test_encode_round_trips_training_rows(encoder: FeatureEncoder) -> None:
    batch = encoder.encode(TRAINING_ROWS)

    # carrier vocab ["UA", "AA", "DL"], hour vocab ["7", "18", "true"]; vocab item i is index i + 1.
    assert batch.categorical.tolist() == [[1, 1], [2, 1], [1, 3], [3, 2]]
    assert batch.categorical.dtype == torch.int64


def test_unknown_categories_go_to_bucket_zero(encoder: FeatureEncoder) -> None:
    rows = [
        make_row(carrier="ZZ", hour=8),
        make_row(carrier="", hour=False),  # "false" was never seen
        make_row(carrier="ua", hour="True"),  # matching is exact: case matters
    ]

    assert encoder.encode(rows).categorical.tolist() == [[0, 0], [0, 0], [0, 0]]


def test_integers_and_their_strings_are_one_category(encoder: FeatureEncoder) -> None:
    batch = encoder.encode([make_row(hour=18), make_row(hour="18"), make_row(hour=True), make_row(hour="true")])

    assert batch.categorical[:, 1].tolist() == [2, 2, 3, 3]


def test_encode_standardises_numeric_features(encoder: FeatureEncoder) -> None:
    batch = encoder.encode([make_row(dep_delay=5.0, distance=250), make_row(dep_delay=-1, distance=100.0)])

    std = math.sqrt(1.25)
    expected = [(5.0 - 2.5) / std, 250 - 100.0, (-1 - 2.5) / std, 0.0]  # distance: std 0 -> divide by 1
    assert batch.numeric.dtype == torch.float32
    assert batch.numeric.shape == (2, 2)
    assert batch.numeric.flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_encode_accepts_numpy_scalars(encoder: FeatureEncoder) -> None:
    rows = [
        make_row(dep_delay=np.float64(2.5), distance=np.float32(100.0), carrier=np.str_("AA"), hour=np.int64(18)),
        make_row(dep_delay=np.int32(2), distance=np.int64(100), carrier="UA", hour=np.bool_(True)),
    ]

    batch = encoder.encode(rows)

    assert batch.numeric[0].tolist() == [0.0, 0.0]
    assert batch.numeric[1, 1].item() == 0.0
    assert batch.categorical.tolist() == [[2, 2], [1, 3]]


def test_encode_of_no_rows_is_an_empty_batch(encoder: FeatureEncoder) -> None:
    batch = encoder.encode([])

    assert len(batch) == 0
    assert batch.numeric.shape == (0, 2)
    assert batch.categorical.shape == (0, 2)


def test_encode_requires_a_list(encoder: FeatureEncoder) -> None:
    with pytest.raises(TypeError, match="rows must be a list"):
        encoder.encode({"rows": []})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad_row", "field", "reason"),
    [
        ("not a row", None, "expected an object, got string"),
        (None, None, "expected an object, got null"),
        ([5.0, "UA", 250, 7], None, "expected an object, got array"),
        (make_row(hour=DROP), "hour", "missing"),
        (make_row(hour=DROP, wind=3), "hour", "missing"),
        (make_row(wind=3), "wind", "unknown feature"),
        (make_row(dep_delay="5"), "dep_delay", "expected a number, got string"),
        (make_row(dep_delay=True), "dep_delay", "expected a number, got boolean"),
        (make_row(distance=None), "distance", "expected a number, got null"),
        (make_row(distance=[1.0]), "distance", "expected a number, got array"),
        (make_row(dep_delay=float("nan")), "dep_delay", "must be a finite number, got nan"),
        (make_row(dep_delay=float("inf")), "dep_delay", "must be a finite number, got inf"),
        (make_row(distance=float("-inf")), "distance", "must be a finite number, got -inf"),
        (make_row(distance=np.float64("nan")), "distance", "must be a finite number, got nan"),
        (make_row(distance=10**400), "distance", "number out of range"),
        (make_row(dep_delay=1e300), "dep_delay", "number out of range"),  # finite, but not in float32
        (make_row(carrier=None), "carrier", "expected a string, integer or boolean, got null"),
        (make_row(carrier=7.0), "carrier", "expected a string, integer or boolean, got floating-point number"),
        (make_row(hour=["7"]), "hour", "expected a string, integer or boolean, got array"),
        (make_row(hour={"h": 7}), "hour", "expected a string, integer or boolean, got object"),
        (make_row(dep_delay="x", hour=None), "dep_delay", "expected a number, got string"),  # schema order
        (
            make_row(carrier=np.float64(7.0)),
            "carrier",
            "expected a string, integer or boolean, got floating-point number",
        ),
        (make_row(dep_delay=np.bool_(True)), "dep_delay", "expected a number, got boolean"),
    ],
)
def test_row_error_names_index_field_and_reason(
    encoder: FeatureEncoder, bad_row: Any, field: str | None, reason: str
) -> None:
    rows = [make_row(), make_row(), bad_row, make_row(carrier=None)]

    with pytest.raises(RowError) as excinfo:
        encoder.encode(rows)

    error = excinfo.value
    assert (error.index, error.field) == (2, field)
    assert error.reason.startswith(reason)  # a range problem goes on to name the accepted range
    assert isinstance(error, ValueError)
    assert str(error).startswith("row 2")


def test_row_error_reports_the_first_bad_row(encoder: FeatureEncoder) -> None:
    rows = [make_row(), make_row(hour=None), make_row(dep_delay=float("nan"))]

    with pytest.raises(RowError) as excinfo:
        encoder.encode(rows)

    assert (excinfo.value.index, excinfo.value.field) == (1, "hour")


@pytest.fixture
def batch() -> TabularBatch:
    numeric = torch.arange(10, dtype=torch.float32).reshape(5, 2)
    categorical = torch.arange(5, dtype=torch.int64).reshape(5, 1)
    return TabularBatch(numeric, categorical)


def test_batch_len_and_slicing(batch: TabularBatch) -> None:
    part = batch[1:3]

    assert len(batch) == 5
    assert len(part) == 2
    assert part.numeric.tolist() == [[2.0, 3.0], [4.0, 5.0]]
    assert part.categorical.tolist() == [[1], [2]]


def test_batch_select_by_indices_and_mask(batch: TabularBatch) -> None:
    by_tensor = batch.select(torch.tensor([4, 0]))
    by_list = batch[[4, 0]]
    by_mask = batch.select(torch.tensor([True, False, False, False, True]))

    assert by_tensor.categorical.tolist() == [[4], [0]]
    assert torch.equal(by_list.numeric, by_tensor.numeric)
    assert by_mask.categorical.tolist() == [[0], [4]]


def test_batch_rejects_an_int_index(batch: TabularBatch) -> None:
    with pytest.raises(TypeError, match="slice"):
        batch[0]  # type: ignore[index]


def test_batch_to_device_keeps_values(batch: TabularBatch) -> None:
    moved = batch.to("cpu")

    assert moved.device == torch.device("cpu")
    assert torch.equal(moved.numeric, batch.numeric)
    assert torch.equal(moved.categorical, batch.categorical)


@pytest.mark.parametrize(
    ("numeric", "categorical", "message"),
    [
        (torch.zeros(3, 2), torch.zeros(2, 1, dtype=torch.int64), "3 rows but categorical has 2"),
        (torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.int32), "int64"),
        (torch.zeros(3, 2, dtype=torch.int64), torch.zeros(3, 1, dtype=torch.int64), "floating-point"),
        (torch.zeros(3), torch.zeros(3, 1, dtype=torch.int64), "2-d"),
    ],
)
def test_batch_checks_its_tensors(numeric: torch.Tensor, categorical: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TabularBatch(numeric, categorical)
