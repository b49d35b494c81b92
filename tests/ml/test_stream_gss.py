"""The ``gss`` dev stream: every asked respondent, one slot per wave, leak-free, and drifting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from adaptive.ml.preprocessing import parse_schema
from adaptive.ml.stream_gss import GSS_CATEGORICAL, GSS_LEAKY_COLUMNS, GSS_NUMERIC
from adaptive.ml.streams import Stream, load_stream

# Respondents asked ``abany`` in stevedata/gss_abortion, and the waves they fall in.
GSS_ROWS = 36_794
GSS_WAVES: tuple[int, ...] = (1977, 1978, 1980, 1982, 1983, 1984, 1985, 1987, 1988, 1989, 1990, 1991, 1993)
GSS_WAVES += tuple(range(1994, 2019, 2))


@pytest.fixture(scope="module")
def gss() -> Stream:
    return load_stream("gss")


def test_every_asked_respondent_is_an_event_with_a_unique_id(gss: Stream) -> None:
    assert len(gss) == GSS_ROWS
    assert len(set(gss.ids)) == GSS_ROWS
    assert gss.ids[0].startswith("gss1977-")


def test_label_rate_is_the_share_answering_yes(gss: Stream) -> None:
    assert gss.labels.dtype == np.int64
    assert set(np.unique(gss.labels)) == {0, 1}
    assert gss.positive_rate == pytest.approx(0.414, abs=0.001)


def test_times_are_wave_years_sorted_at_midnight_utc(gss: Stream) -> None:
    assert gss.times.dtype == np.dtype("datetime64[s]")
    assert np.all(np.diff(gss.times.astype(np.int64)) >= 0)
    years = sorted({int(str(t)[:4]) for t in gss.times})
    assert tuple(years) == GSS_WAVES
    assert set(np.unique(gss.times)) == {np.datetime64(f"{year}-01-01T00:00:00") for year in GSS_WAVES}


def test_default_slots_are_one_per_wave(gss: Stream) -> None:
    slots = gss.time_slots()
    assert len(slots) == len(GSS_WAVES)
    assert [str(gss.times[start])[:4] for start, _ in slots] == [str(year) for year in GSS_WAVES]
    assert min(stop - start for start, stop in slots) >= 800


def test_schema_matches_every_row_and_nothing_is_missing(gss: Stream) -> None:
    schema = parse_schema(gss.schema)
    assert tuple(schema.numeric) == GSS_NUMERIC
    assert tuple(schema.categorical) == GSS_CATEGORICAL
    for row in gss.rows:
        assert list(row) == list(schema.names)
        assert all(isinstance(row[name], float) and math.isfinite(row[name]) for name in schema.numeric)
        assert all(isinstance(row[name], str) and row[name] for name in schema.categorical)


def test_no_item_answered_with_the_label_is_a_feature(gss: Stream) -> None:
    assert not GSS_LEAKY_COLUMNS & set(gss.feature_names)
    assert not {"pid", "year", "id"} & set(gss.feature_names)


def test_missing_age_takes_the_wave_median_and_a_flag(gss: Stream) -> None:
    flagged = [i for i, row in enumerate(gss.rows) if row["age_missing"] == 1.0]
    assert 0 < len(flagged) < 0.01 * len(gss)
    for i in flagged[:20]:
        wave = gss.times == gss.times[i]
        answered = [row["age"] for row, same in zip(gss.rows, wave, strict=True) if same and not row["age_missing"]]
        assert gss.rows[i]["age"] == pytest.approx(float(np.median(answered)))


def test_fields_asked_only_in_later_waves_are_missing_before(gss: Stream) -> None:
    early = gss.slice(0, int(np.searchsorted(gss.times, np.datetime64("1991-01-01T00:00:00"))))
    assert {row["hispanic"] for row in early.rows} == {"NA"}
    assert {row["relactiv"] for row in early.rows} == {"NA"}
    late = gss.slice(int(np.searchsorted(gss.times, np.datetime64("2008-01-01T00:00:00"))), len(gss))
    assert {row["hispanic"] for row in late.rows} >= {"no", "yes"}
    assert {row["relactiv"] for row in late.rows} >= {str(level) for level in range(1, 11)}


def _yes_rate(stream: Stream, parties: set[str]) -> float:
    picked = [label for row, label in zip(stream.rows, stream.labels, strict=True) if row["partyid"] in parties]
    return float(np.mean(picked))


def test_party_effect_flips_between_the_first_and_last_waves(gss: Stream) -> None:
    """The documented concept drift: early Republicans said yes more often than Democrats, later far less."""
    democrats, republicans = {"Strong Democrat", "Not Str Democrat"}, {"Strong Republican", "Not Str Republican"}
    early = gss.slice(0, int(np.searchsorted(gss.times, np.datetime64("1985-01-01T00:00:00"))))
    late = gss.slice(int(np.searchsorted(gss.times, np.datetime64("2006-01-01T00:00:00"))), len(gss))
    assert _yes_rate(early, republicans) > _yes_rate(early, democrats)
    assert _yes_rate(late, democrats) - _yes_rate(late, republicans) > 0.15
