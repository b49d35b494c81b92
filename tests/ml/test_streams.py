"""The dev streams: loaded from the installed packages, clean, sorted, leak-free and sliceable."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from adaptive.ml.preprocessing import FeatureEncoder, fit_preprocessing, parse_schema
from adaptive.ml.stream_gss import GSS_LEAKY_COLUMNS
from adaptive.ml.streams import (
    FLIGHTS_LEAKY_COLUMNS,
    MOVIELENS_LEAKY_COLUMNS,
    STREAM_NAMES,
    Stream,
    load_stream,
)

LIMIT = 5000


@pytest.fixture(scope="module", params=STREAM_NAMES)
def stream(request: pytest.FixtureRequest) -> Stream:
    return load_stream(request.param, limit=LIMIT)


@pytest.fixture(scope="module")
def full_movielens() -> Stream:
    return load_stream("movielens")


def test_limit_keeps_the_first_events_in_time(stream: Stream) -> None:
    assert len(stream) == LIMIT
    assert len(stream.labels) == len(stream.times) == len(stream.ids) == LIMIT


def test_schema_parses_and_matches_every_row(stream: Stream) -> None:
    schema = parse_schema(stream.schema)
    assert schema.numeric and schema.categorical
    for row in stream.rows:
        assert list(row) == list(schema.names)
        assert all(isinstance(row[name], float) for name in schema.numeric)
        assert all(isinstance(row[name], str) for name in schema.categorical)


def test_rows_have_no_missing_values(stream: Stream) -> None:
    for row in stream.rows:
        for value in row.values():
            assert value is not None
            assert not (isinstance(value, float) and not math.isfinite(value))


def test_rows_encode_with_the_shared_encoder(stream: Stream) -> None:
    schema = parse_schema(stream.schema)
    encoder = FeatureEncoder(schema, fit_preprocessing(schema, stream.rows))
    batch = encoder.encode(stream.rows[:100])
    assert len(batch) == 100


def test_events_are_sorted_by_time_and_ids_unique(stream: Stream) -> None:
    assert stream.times.dtype == np.dtype("datetime64[s]")
    assert np.all(np.diff(stream.times.astype(np.int64)) >= 0)
    assert len(set(stream.ids)) == len(stream)


def test_labels_are_binary_with_both_classes(stream: Stream) -> None:
    assert stream.labels.dtype == np.int64
    assert set(np.unique(stream.labels)) == {0, 1}


def test_no_column_that_leaks_the_label_is_a_feature(stream: Stream) -> None:
    leaky = {"flights": FLIGHTS_LEAKY_COLUMNS, "movielens": MOVIELENS_LEAKY_COLUMNS, "gss": GSS_LEAKY_COLUMNS}
    assert not leaky[stream.name] & set(stream.feature_names)


def test_flights_times_are_utc_scheduled_departures() -> None:
    flights = load_stream("flights", limit=3)
    # The first flight of the file: UA1545 EWR-IAH, scheduled 05:15 EST on 2013-01-01 = 10:15 UTC.
    assert flights.ids[0] == "nyc13-0"
    assert flights.times[0] == np.datetime64("2013-01-01T10:15:00")
    assert flights.rows[0]["dep_hour"] == 5.25
    assert flights.rows[0]["day_of_week"] == "Tue"


def test_movielens_prior_stats_only_count_strictly_earlier_ratings(full_movielens: Stream) -> None:
    seen: Counter[str] = Counter()
    by_second: Counter[tuple[str, np.datetime64]] = Counter()
    for row, time in zip(full_movielens.rows, full_movielens.times, strict=True):
        user = row["user_id"]
        earlier = seen[user] - by_second[(user, time)]
        assert row["user_prior_count"] == pytest.approx(math.log1p(earlier))
        seen[user] += 1
        by_second[(user, time)] += 1


def test_time_slots_cover_every_event_in_order(stream: Stream) -> None:
    for slots in (stream.time_slots(), stream.time_slots(7), stream.time_slots(freq="D")):
        assert slots[0][0] == 0
        assert slots[-1][1] == len(stream)
        assert all(stop > start for start, stop in slots)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(slots))


def test_calendar_slots_do_not_mix_periods(full_movielens: Stream) -> None:
    slots = full_movielens.time_slots()
    years = [{int(str(t)[:4]) for t in full_movielens.times[start:stop]} for start, stop in slots]
    assert all(len(year) == 1 for year in years)
    assert [next(iter(y)) for y in years] == sorted(next(iter(y)) for y in years)


def test_equal_count_slots_have_nearly_equal_sizes(stream: Stream) -> None:
    sizes = [stop - start for start, stop in stream.time_slots(7)]
    assert max(sizes) - min(sizes) <= 1


def test_slice_keeps_the_events_in_range(stream: Stream) -> None:
    part = stream.slice(10, 20)
    assert len(part) == 10
    assert part.ids == stream.ids[10:20]
    assert np.array_equal(part.labels, stream.labels[10:20])


def test_shuffled_keeps_the_multiset_of_events_and_the_time_axis(stream: Stream) -> None:
    shuffled = stream.shuffled(seed=0)
    assert sorted(shuffled.ids) == sorted(stream.ids)
    assert shuffled.ids != stream.ids
    assert np.array_equal(shuffled.times, stream.times)
    label_of = dict(zip(stream.ids, stream.labels.tolist(), strict=True))
    assert [label_of[i] for i in shuffled.ids] == shuffled.labels.tolist()
    assert stream.shuffled(seed=0).ids == shuffled.ids
    assert stream.shuffled(seed=1).ids != shuffled.ids


def test_unknown_stream_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown stream"):
        load_stream("weather")  # type: ignore[arg-type]
