"""Vocabularies that grow between versions: new categories for a retrain, and the tables to hold them.

A version's vocabularies are fixed when it is trained, so every user, product or route that appears
later lands in the unknown bucket, for that version and, when a retrain keeps the parent's
preprocessing, for every later one too. ``grow_vocabularies`` appends the categories a retrain's
rows show often enough to each vocabulary; ``extend_model`` gives a model the embedding rows they
need.

Growth changes nothing the parent already does. Existing categories keep their indexes (new ones
go at the end) and their rows, and every new row starts as a copy of the row that scored the
category before it had one: the unknown bucket it hashed into (``unknown_bucket``; the single
unknown row by default). The extended model therefore scores every row exactly as the parent does,
known, new or still unknown categories alike, until training moves it; the candidate's flip report
then measures only what training changed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import torch

from adaptive.ml.architectures import TabularModel, build_model
from adaptive.ml.preprocessing import (
    CATEGORICAL,
    FeatureSchema,
    PreprocessingError,
    category_counts,
    input_spec,
    unknown_bucket,
    unknown_buckets,
    validate_preprocessing,
)
from adaptive.ml.weights import load_into

# The built-in architectures' per-field tables (adaptive.ml.architectures): ``embeddings.<j>`` in
# both, ``first_order_categorical.<j>`` in DeepFM; row ``i`` of table ``j`` belongs to index ``i``
# of categorical feature ``j``.
_TABLE: Final = re.compile(r"^(?:embeddings|first_order_categorical)\.(\d+)\.weight$")


class VocabError(ValueError):
    """Vocabularies cannot be grown as asked, or a model's tables do not fit them."""


@dataclass(frozen=True)
class VocabGrowth:
    """Grown preprocessing stats and, per categorical feature, the values appended (in index order)."""

    stats: dict[str, Any]
    added: dict[str, list[str]]

    @property
    def grew(self) -> bool:
        """Whether any vocabulary gained a value."""
        return any(self.added.values())

    def counts(self) -> dict[str, int]:
        """How many values each categorical feature gained."""
        return {name: len(values) for name, values in self.added.items()}


def grow_vocabularies(
    schema: FeatureSchema,
    parent: dict[str, Any],
    rows: list[dict[str, Any]],
    *,
    min_count: int,
    max_new: int | None = None,
) -> VocabGrowth:
    """The parent's stats with each vocabulary extended by the new values ``rows`` show often enough.

    A value joins when it occurs at least ``min_count`` times in ``rows`` and the vocabulary lacks
    it; the newcomers go after the existing entries, most frequent first, ties by value (so row
    order does not matter), at most ``max_new`` per feature. Everything else in ``parent`` is kept
    as it is (numeric stats, ``unknown_buckets``), and ``parent`` itself is not modified. Rows are
    validated as the encoder validates them (``RowError``).
    """
    validate_preprocessing(schema, parent)
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise VocabError(f"min_count must be a positive integer, got {min_count!r}")
    if max_new is not None and (isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 0):
        raise VocabError(f"max_new must be a non-negative integer or None, got {max_new!r}")
    counts = category_counts(schema, rows) if rows and schema.categorical else {}
    vocabs: dict[str, Any] = dict(parent.get(CATEGORICAL, {}))
    added: dict[str, list[str]] = {}
    for name in schema.categorical:
        entry = vocabs[name]
        known = set(entry["vocab"])
        fresh = [(value, n) for value, n in counts.get(name, {}).items() if n >= min_count and value not in known]
        # Ties by value, a null category (a nullable column) after the strings, as fit_preprocessing ranks.
        fresh.sort(key=lambda item: (-item[1], item[0] is None, item[0] or ""))
        new = [value for value, _ in fresh][: max_new if max_new is not None else len(fresh)]
        added[name] = new
        if new:
            vocabs[name] = {**entry, "vocab": [*entry["vocab"], *new]}
    stats = {**parent, CATEGORICAL: vocabs} if schema.categorical else dict(parent)
    return VocabGrowth(stats=stats, added=added)


def row_sources(schema: FeatureSchema, parent: dict[str, Any], added: Mapping[str, Sequence[Any]]) -> list[list[int]]:
    """Per categorical feature, the parent row each appended value copies: the bucket that scored it.

    ``added`` maps features to the values appended to the parent's vocabularies, in order (a
    ``VocabGrowth.added``); features it does not name gained nothing.
    """
    vocabs = parent.get(CATEGORICAL, {})
    sources: list[list[int]] = []
    for name in schema.categorical:
        buckets = unknown_buckets(vocabs[name])
        sources.append([unknown_bucket(value, buckets) for value in added.get(name, ())])
    return sources


def extend_state_dict(state: Mapping[str, torch.Tensor], sources: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """A copy of ``state`` whose per-field tables have ``len(sources[j])`` rows appended to table ``j``.

    New row ``k`` of table ``j`` is a copy of row ``sources[j][k]``; all existing rows are kept as
    they are. Other tensors are copied unchanged.
    """
    extended: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = _TABLE.match(key)
        rows = sources[int(match.group(1))] if match is not None and int(match.group(1)) < len(sources) else ()
        if rows:
            if max(rows) >= tensor.shape[0] or min(rows) < 0:
                raise VocabError(f"{key}: has {tensor.shape[0]} rows, cannot copy row {max(rows)}")
            index = torch.as_tensor(list(rows), dtype=torch.int64, device=tensor.device)
            extended[key] = torch.cat([tensor.detach(), tensor.detach()[index]]).clone()
        else:
            extended[key] = tensor.detach().clone()
    return extended


def extend_model(
    model: TabularModel, schema: FeatureSchema, parent: dict[str, Any], grown: VocabGrowth
) -> TabularModel:
    """A new model for ``grown.stats`` that scores every row exactly as ``model`` (for ``parent``) does.

    ``model`` is left untouched (it may be a cached, serving copy); the result is on the CPU, in the
    same train/eval mode. Raises ``VocabError`` when ``model``'s tables do not fit ``parent``.
    """
    spec = input_spec(schema, parent)
    if tuple(model.spec.cardinalities) != spec.cardinalities:
        raise VocabError(
            f"the model's tables have {list(model.spec.cardinalities)} rows, the parent's vocabularies "
            f"need {list(spec.cardinalities)}"
        )
    try:
        new_spec = input_spec(schema, grown.stats)
    except PreprocessingError as exc:
        raise VocabError(f"grown stats are invalid: {exc}") from exc
    with torch.random.fork_rng(devices=[]):  # its random initial weights are all overwritten below
        extended = build_model(model.architecture, model.config, new_spec, model.n_outputs)
    state = {key: value.cpu() for key, value in model.state_dict().items()}
    load_into(extended, extend_state_dict(state, row_sources(schema, parent, grown.added)))
    extended.train(model.training)
    return extended
