"""Scoring with compensation: the base model, its memory key and the error memory's correction.

``score_hosted`` runs a version's model once through ``embed``: the hidden layer gives the base
score (``head``) and the memory key, and the live memory of that version corrects the score
(docs/design.md). ``score_external`` does the same for a model served elsewhere, from the score and
key vector the client sends. Both return the keys as bytes for the Event rows, so feedback never
needs a second forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from adaptive.errors import InvalidInput
from adaptive.ml.architectures import logits_to_proba
from adaptive.ml.compensation import compensate, keys_from_hidden
from adaptive.ml.gate import blend
from adaptive.ml.preprocessing import RowError
from adaptive.models import Deployment, ModelVersion
from adaptive.runtime import compensation_config, encode_keys, live_memory, load_version, served_strength


@dataclass(frozen=True)
class Scored:
    """A batch's scores: binary [N] lists, or multiclass vectors with the top probability as score."""

    base_scores: list[float]
    scores: list[float]
    base_vectors: list[list[float]] | None
    vectors: list[list[float]] | None
    keys: list[bytes]
    revision: int
    # The scores at the full strength of the correction, which the compensation gate learns from
    # (None when no correction was computed: compensation off or an empty memory).
    full_scores: list[float] | None = None
    full_vectors: list[list[float]] | None = None


def score_hosted(deployment: Deployment, version: ModelVersion, features: list[dict]) -> Scored:
    loaded = load_version(deployment, version)
    try:
        batch = loaded.encoder.encode(features)
    except RowError as exc:
        raise InvalidInput(exc.field or "features", exc.reason, index=exc.index) from exc
    with torch.inference_mode():
        h = loaded.model.embed(batch)
        p_base = logits_to_proba(loaded.model.head(h))
        keys = keys_from_hidden(h, loaded.key_mean)
        _refuse_non_finite(p_base, keys, "features", "the model's output for this row is not a finite number")
        p_comp, p_full, revision = _compensate(deployment, version.pk, keys, p_base)
    return _scored(p_base, p_comp, p_full, keys, revision)


def score_external(deployment: Deployment, p_base: torch.Tensor, keys: torch.Tensor) -> Scored:
    """Compensate scores computed elsewhere; ``keys`` [N, key_dim] are normalised here."""
    with torch.inference_mode():
        keys = keys_from_hidden(keys, torch.zeros(keys.shape[1]))
        _refuse_non_finite(p_base, keys, "key", "cannot be normalised to a finite unit vector")
        p_comp, p_full, revision = _compensate(deployment, None, keys, p_base)
    return _scored(p_base, p_comp, p_full, keys, revision)


def non_finite_rows(p_base: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """A [N] mask of the rows whose score or key holds an infinite or NaN value."""
    bad = ~torch.isfinite(keys).all(dim=1)
    return bad | ~torch.isfinite(p_base.reshape(p_base.shape[0], -1)).all(dim=1)


def _refuse_non_finite(p_base: torch.Tensor, keys: torch.Tensor, field: str, reason: str) -> None:
    """A row whose score or key is not finite is refused before anything is stored: one such key in
    a memory would make every read of it fail."""
    if bool(torch.isfinite(keys).all()) and bool(torch.isfinite(p_base).all()):
        return
    index = int(non_finite_rows(p_base, keys).nonzero()[0, 0])
    raise InvalidInput(field, reason, index=index)


def _compensate(
    deployment: Deployment, version_id: int | None, keys: torch.Tensor, p_base: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """The served scores, the full-strength ones (None when nothing was corrected) and the revision.

    The served score is ``blend(p_base, p_full, strength)``: the gate's learned strength while
    ``compensation_gate`` is on (adaptive.ml.gate), the full correction otherwise.
    """
    live = live_memory(deployment, version_id, keys.shape[1])
    if not deployment.compensation_enabled:
        return p_base, None, live.revision
    with live.lock:
        if len(live.memory) == 0:
            return p_base, None, live.revision
        readout = live.memory.estimate(keys)
        revision = live.revision
    p_full = compensate(p_base, readout, compensation_config(deployment))
    return blend(p_base, p_full, served_strength(deployment)), p_full, revision


def _scored(
    p_base: torch.Tensor, p_comp: torch.Tensor, p_full: torch.Tensor | None, keys: torch.Tensor, revision: int
) -> Scored:
    if p_base.dim() == 1:
        return Scored(
            base_scores=p_base.double().tolist(),
            scores=p_comp.double().tolist(),
            base_vectors=None,
            vectors=None,
            keys=encode_keys(keys),
            revision=revision,
            full_scores=None if p_full is None else p_full.double().tolist(),
        )
    base_vectors = p_base.double().tolist()
    vectors = p_comp.double().tolist()
    return Scored(
        base_scores=[max(v) for v in base_vectors],
        scores=[max(v) for v in vectors],
        base_vectors=base_vectors,
        vectors=vectors,
        keys=encode_keys(keys),
        revision=revision,
        full_vectors=None if p_full is None else p_full.double().tolist(),
    )


@torch.inference_mode()
def memory_support(deployment: Deployment, keys: torch.Tensor, version_id: int | None) -> torch.Tensor:
    """The live memory's support [N] for ``keys`` (how much evidence it holds near them)."""
    live = live_memory(deployment, version_id, keys.shape[1])
    with live.lock:
        if len(live.memory) == 0:
            return torch.zeros(keys.shape[0])
        return live.memory.estimate(keys).support
