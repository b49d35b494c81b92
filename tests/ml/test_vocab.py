"""Growing vocabularies (adaptive.ml.vocab) and hashed unknown buckets (adaptive.ml.preprocessing)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from adaptive.ml.architectures import TabularModel, build_model
from adaptive.ml.preprocessing import (
    MAX_UNKNOWN_BUCKETS,
    FeatureEncoder,
    FeatureSchema,
    PreprocessingError,
    fit_preprocessing,
    input_spec,
)
from adaptive.ml.vocab import VocabError, extend_model, grow_vocabularies
from tests.ml.samples import TRAINING_ROWS, make_row

ROOT = Path(__file__).resolve().parents[2]


def rows_with(carriers: dict[str, int], hours: dict[Any, int] | None = None) -> list[dict[str, Any]]:
    """Rows where carrier ``c`` occurs ``carriers[c]`` times (hour 7 unless ``hours`` says otherwise)."""
    rows = [make_row(carrier=carrier) for carrier, n in carriers.items() for _ in range(n)]
    for hour, n in (hours or {}).items():
        rows += [make_row(hour=hour) for _ in range(n)]
    return rows


def scrambled(model: TabularModel, seed: int = 0) -> TabularModel:
    """``model`` with every parameter drawn at random, so that no two embedding rows are alike
    (DeepFM's first-order tables start at zero, which would hide a row copied from the wrong place)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            values = torch.randn(parameter.shape, generator=generator) * 0.5
            # Positive biases keep the ReLUs open, so that every input moves the output.
            parameter.copy_(values.abs() if name.endswith("bias") else values)
    return model.eval()


def parent_model(architecture: str, schema: FeatureSchema, stats: dict[str, Any]) -> TabularModel:
    torch.manual_seed(0)
    return scrambled(build_model(architecture, {"hidden": [16, 8]}, input_spec(schema, stats), 1))


# --- growth ---------------------------------------------------------------------------------------


def test_new_values_seen_min_count_times_are_appended_most_frequent_first(
    schema: FeatureSchema, stats: dict[str, Any]
) -> None:
    parent = copy.deepcopy(stats)
    rows = rows_with({"WN": 3, "B6": 3, "F9": 5, "NK": 2, "UA": 9}, hours={9: 2, "9": 2, 23: 1})

    growth = grow_vocabularies(schema, stats, rows, min_count=3)

    # F9 is the most frequent newcomer; B6 and WN tie and sort by value; NK (2) and UA (known) stay out.
    assert growth.added["carrier"] == ["F9", "B6", "WN"]
    assert growth.stats["categorical"]["carrier"]["vocab"] == [
        *stats["categorical"]["carrier"]["vocab"],
        "F9",
        "B6",
        "WN",
    ]
    # 9 and "9" are one category (4 rows); 23 occurs once.
    assert growth.added["hour"] == ["9"]
    assert growth.counts() == {"carrier": 3, "hour": 1} and growth.grew
    assert growth.stats["numeric"] == stats["numeric"]
    assert stats == parent  # the parent's stats are not modified


def test_growth_is_capped_per_feature_and_does_not_depend_on_row_order(
    schema: FeatureSchema, stats: dict[str, Any]
) -> None:
    rows = rows_with({"WN": 3, "B6": 3, "F9": 5})

    capped = grow_vocabularies(schema, stats, rows, min_count=1, max_new=2)
    reversed_rows = grow_vocabularies(schema, stats, rows[::-1], min_count=1, max_new=2)

    assert capped.added["carrier"] == ["F9", "B6"] == reversed_rows.added["carrier"]


def test_no_new_values_leaves_the_stats_equal(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    growth = grow_vocabularies(schema, stats, TRAINING_ROWS * 3, min_count=1)

    assert not growth.grew
    assert growth.stats == stats


@pytest.mark.parametrize(("min_count", "max_new"), [(0, None), (True, None), (2.0, None), (1, -1)])
def test_bad_growth_settings_are_refused(
    schema: FeatureSchema, stats: dict[str, Any], min_count: Any, max_new: Any
) -> None:
    with pytest.raises(VocabError):
        grow_vocabularies(schema, stats, TRAINING_ROWS, min_count=min_count, max_new=max_new)


# --- extended models --------------------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["mlp", "deepfm"])
@pytest.mark.parametrize("buckets", [1, 8])
def test_extended_model_scores_every_row_exactly_as_the_parent(
    schema: FeatureSchema, architecture: str, buckets: int
) -> None:
    stats = fit_preprocessing(schema, TRAINING_ROWS, unknown_buckets=buckets)
    parent = parent_model(architecture, schema, stats)
    growth = grow_vocabularies(schema, stats, rows_with({"WN": 2, "B6": 2}, hours={9: 2}), min_count=2)
    # Known, newly added and still unknown values in both columns.
    rows = [
        # distance 100 is the (constant) training value: any other would stand 150 "stds" out and swamp the rest.
        make_row(carrier=carrier, hour=hour, dep_delay=delay, distance=100.0)
        for carrier in ("UA", "DL", "WN", "B6", "ZZ", "QQ")
        for hour, delay in ((7, 0.0), (9, 3.0), (18, -2.0), (21, 1.5))
    ]

    extended = extend_model(parent, schema, stats, growth)

    before = FeatureEncoder(schema, stats).encode(rows)
    after = FeatureEncoder(schema, growth.stats).encode(rows)
    # The new values have their own rows now (appended after the existing indexes) ...
    n_carriers = len(stats["categorical"]["carrier"]["vocab"])
    assert sorted(set(after.categorical[:, 0].tolist()) - set(before.categorical[:, 0].tolist())) == [
        n_carriers + buckets,
        n_carriers + buckets + 1,
    ]
    assert (
        extended.state_dict()["embeddings.0.weight"].shape[0] == parent.state_dict()["embeddings.0.weight"].shape[0] + 2
    )
    # ... and yet every row scores exactly as before, until training moves them.
    with torch.no_grad():
        scores = parent(before)
        # Rows the parent encodes differently score differently: nothing hides a wrong row.
        inputs = {(*c, *x) for c, x in zip(before.categorical.tolist(), before.numeric.tolist(), strict=True)}
        assert len(set(scores.flatten().tolist())) == len(inputs)
        assert torch.equal(extended(after), scores)
        assert torch.equal(extended.embed(after), parent.embed(before))
    for key, tensor in parent.state_dict().items():  # every existing row is kept
        assert torch.equal(extended.state_dict()[key][: tensor.shape[0]], tensor)


def test_new_rows_are_parameters_of_their_own(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    # DeepFM: its first-order table reaches the logit linearly, so the gradient cannot vanish in a ReLU.
    parent = parent_model("deepfm", schema, stats)
    growth = grow_vocabularies(schema, stats, rows_with({"WN": 1}), min_count=1)
    extended = extend_model(parent, schema, stats, growth)
    new_index = len(stats["categorical"]["carrier"]["vocab"]) + 1
    batch = FeatureEncoder(schema, growth.stats).encode([make_row(carrier="WN")])

    extended(batch).sum().backward()
    gradient = dict(extended.named_parameters())["first_order_categorical.0.weight"].grad
    assert gradient is not None

    # Only the new carrier's row learns from a row of that carrier; the unknown bucket does not.
    assert gradient[new_index].abs().sum() > 0
    assert gradient[0].abs().sum() == 0
    assert dict(parent.named_parameters())["first_order_categorical.0.weight"].grad is None  # the parent is untouched


def test_a_model_that_does_not_fit_the_parent_stats_is_refused(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    other = fit_preprocessing(schema, [*TRAINING_ROWS, make_row(carrier="WN")])
    growth = grow_vocabularies(schema, stats, rows_with({"B6": 1}), min_count=1)

    with pytest.raises(VocabError, match="tables have"):
        extend_model(parent_model("mlp", schema, other), schema, stats, growth)


# --- hashed unknowns ------------------------------------------------------------------------------


def test_one_bucket_is_the_original_layout(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    explicit = copy.deepcopy(stats)
    for entry in explicit["categorical"].values():
        entry["unknown_buckets"] = 1
    rows = [*TRAINING_ROWS, make_row(carrier="ZZ", hour=3), make_row(carrier="QQ", hour=False)]

    default = FeatureEncoder(schema, stats)

    assert (
        "unknown_buckets" not in fit_preprocessing(schema, TRAINING_ROWS, unknown_buckets=1)["categorical"]["carrier"]
    )
    assert torch.equal(default.encode(rows).categorical, FeatureEncoder(schema, explicit).encode(rows).categorical)
    # carrier vocab ["UA", "AA", "DL"] at 1..3, hour ["7", "18", "true"]; unknowns at 0.
    assert default.encode(rows).categorical.tolist()[-2:] == [[0, 0], [0, 0]]
    assert default.spec.cardinalities == input_spec(schema, stats).cardinalities == (4, 4)


def test_hashed_unknowns_fill_their_buckets_and_vocab_items_follow(schema: FeatureSchema) -> None:
    stats = fit_preprocessing(schema, TRAINING_ROWS, unknown_buckets={"carrier": 16})
    encoder = FeatureEncoder(schema, stats)
    unknown = [make_row(carrier=f"new-{i}") for i in range(2000)]

    codes = encoder.encode(unknown).categorical[:, 0]
    known = encoder.encode([make_row(carrier=c) for c in stats["categorical"]["carrier"]["vocab"]])

    assert stats["categorical"]["carrier"]["unknown_buckets"] == 16
    assert "unknown_buckets" not in stats["categorical"]["hour"]
    assert int(codes.min()) >= 0 and int(codes.max()) < 16
    assert len(set(codes.tolist())) == 16  # 2000 distinct values spread over every bucket
    assert known.categorical[:, 0].tolist() == [16, 17, 18]
    assert encoder.spec.cardinalities == input_spec(schema, stats).cardinalities == (3 + 16, 3 + 1)
    # A value keeps its bucket within a process, and 9 and "9" are one value.
    again = encoder.encode([make_row(carrier="new-5"), make_row(carrier=9), make_row(carrier="9")]).categorical[:, 0]
    assert again[0] == codes[5] and again[1] == again[2]
    # JSON may carry a lone surrogate ("\\ud800"), which strict UTF-8 cannot encode: still a bucket.
    assert 0 <= int(encoder.encode([make_row(carrier="\ud800")]).categorical[0, 0]) < 16


def test_buckets_are_the_same_in_every_process(schema: FeatureSchema) -> None:
    """Python salts ``hash(str)`` per process; the buckets must not depend on it."""
    script = (
        "import json; from adaptive.ml.preprocessing import FeatureEncoder, fit_preprocessing, parse_schema;"
        "from tests.ml.samples import SCHEMA_JSON, TRAINING_ROWS, make_row;"
        "schema = parse_schema(SCHEMA_JSON);"
        "encoder = FeatureEncoder(schema, fit_preprocessing(schema, TRAINING_ROWS, unknown_buckets=64));"
        "rows = [make_row(carrier=f'user-{i}', hour=i) for i in range(200)];"
        "print(json.dumps(encoder.encode(rows).categorical.tolist()))"
    )
    runs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        runs.append(json.loads(done.stdout))

    assert runs[0] == runs[1]
    assert len({row[0] for row in runs[0]}) > 32  # and they are not all one bucket


@pytest.mark.parametrize("buckets", [0, MAX_UNKNOWN_BUCKETS + 1, True, "8", 2.0, None])
def test_bad_bucket_counts_are_refused(schema: FeatureSchema, stats: dict[str, Any], buckets: Any) -> None:
    broken = copy.deepcopy(stats)
    broken["categorical"]["carrier"]["unknown_buckets"] = buckets

    with pytest.raises(PreprocessingError, match="carrier: unknown_buckets must be an integer"):
        FeatureEncoder(schema, broken)
    with pytest.raises(PreprocessingError, match="unknown_buckets must be an integer"):
        fit_preprocessing(schema, TRAINING_ROWS, unknown_buckets=buckets)


def test_other_keys_and_stray_bucket_names_are_refused(schema: FeatureSchema, stats: dict[str, Any]) -> None:
    broken = copy.deepcopy(stats)
    broken["categorical"]["carrier"]["buckets"] = 8

    with pytest.raises(PreprocessingError, match="optionally 'unknown_buckets'"):
        FeatureEncoder(schema, broken)
    with pytest.raises(PreprocessingError, match="'dep_delay', which is not a categorical feature"):
        fit_preprocessing(schema, TRAINING_ROWS, unknown_buckets={"dep_delay": 4})
