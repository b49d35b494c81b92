"""The compensation gate of a deployment: learned from labels, read by serving and the dashboard.

``learn`` is called by the compensation-update job (adaptive.services.memory.apply_pending) under
the deployment's row lock, with the labeled events it moves into the memory: each carries its base
score, the full-strength corrected score computed when it was served, and its label, which is all
``adaptive.ml.gate.CompensationGate`` needs. The strength it then implies is returned for the
caller to store in ``Deployment.compensation_strength``, next to the new memory revision, where
serving reads it without another query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from adaptive.ml.gate import CompensationGate
from adaptive.models import Deployment, GateState
from adaptive.runtime import is_stored_score

# (label, base score, base vector, full score, full vector) of one labeled event.
GateRow = tuple[Any, Any, Any, Any, Any]


def learn(deployment: Deployment, rows: Sequence[GateRow]) -> float | None:
    """Teach the deployment's gate these labeled events; the new strength, or None if none was usable.

    Events served without a correction (compensation off, an empty memory) carry no full score and
    say nothing about what the correction is worth; they are skipped, as are values that are not
    probabilities (an older release's rows, or rows written by hand).
    """
    multiclass = deployment.n_outputs > 1
    labels, base, full = [], [], []
    for label, base_score, base_proba, full_score, full_proba in rows:
        p_base, p_full = (base_proba, full_proba) if multiclass else (base_score, full_score)
        usable = is_stored_score(p_base, deployment.n_outputs) and is_stored_score(p_full, deployment.n_outputs)
        if usable and isinstance(label, int) and 0 <= label < max(2, deployment.n_outputs):
            labels.append(label)
            base.append(p_base)
            full.append(p_full)
    if not labels:
        return None
    state, _ = GateState.objects.get_or_create(deployment=deployment)
    gate = CompensationGate.from_state(state.state)
    gate.update(
        torch.tensor(base, dtype=torch.float64),
        torch.tensor(full, dtype=torch.float64),
        torch.tensor(labels, dtype=torch.long if multiclass else torch.float64),
    )
    state.state = gate.state_dict()
    state.save(update_fields=["state", "updated_at"])
    return gate.strength()
