"""What monitoring needs to know about a version, computed once from its profile when it is registered.

* ``importance``: each feature's share of the model's permutation importance on the profile's rows
  (adaptive.ml.importance), so that drift grids rank columns by severity x importance;
* ``calibration``: the isotonic map from the version's scores to P(y = 1), fitted on the profile's
  scores and labels (binary tasks), for label-free performance estimates (adaptive.ml.cbpe).

The demo's and a retrain's profiles come from the held-out rows of their training (the validation
split that chose the epoch), so the calibration is fitted where the model is as confident as on new
traffic; an uploaded profile should be held-out rows too (bench/alarms.py measures the estimates'
error either way: +0.03 AUC of bias on rows the model learned from, under +0.015 on held-out rows). A version without
a labeled profile (an upload without one) gets neither: its columns weigh equally and its windows
have no estimates. Failures are logged and leave both empty: monitoring works without them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from adaptive.ml import cbpe
from adaptive.ml.architectures import logits_to_proba
from adaptive.ml.importance import permutation_importance
from adaptive.ml.preprocessing import RowError
from adaptive.models import Deployment, ModelVersion
from adaptive.runtime import load_version

log = logging.getLogger(__name__)


def describe_version(version: ModelVersion) -> ModelVersion:
    """Compute and save the version's ``importance`` and ``calibration`` from its profile."""
    deployment = version.deployment
    profile = version.profile or {}
    importance: dict[str, float] = {}
    calibration: dict[str, Any] = {}
    try:
        importance = _importance(deployment, version, profile)
        if deployment.n_outputs == 1 and profile.get("prediction") and profile.get("label"):
            calibration = cbpe.fit_calibration(profile["prediction"], profile["label"])
    except (RowError, ValueError) as exc:
        log.warning("version %s of %s: no importance or calibration: %s", version.number, deployment.slug, exc)
    ModelVersion.objects.filter(pk=version.pk).update(importance=importance, calibration=calibration)
    version.importance, version.calibration = importance, calibration
    return version


def _importance(deployment: Deployment, version: ModelVersion, profile: dict[str, Any]) -> dict[str, float]:
    features = profile.get("features") or {}
    labels = profile.get("label") or []
    names = [entry["name"] for entry in deployment.feature_schema]
    if not labels or any(len(features.get(name) or []) != len(labels) for name in names):
        return {}
    rows = [{name: features[name][i] for name in names} for i in range(len(labels))]
    # A missing value (null in the profile) is encoded only in a nullable feature: rows with one
    # elsewhere are left out, and the rest are a sample all the same.
    nullable = {entry["name"] for entry in deployment.feature_schema if entry.get("nullable") is True}
    keep = [
        i for i, row in enumerate(rows) if all(value is not None or name in nullable for name, value in row.items())
    ]
    if len(keep) < 2:
        return {}
    loaded = load_version(deployment, version)

    @torch.inference_mode()
    def score(batch_rows: list[dict[str, Any]]) -> npt.NDArray[np.float64]:
        batch = loaded.encoder.encode(batch_rows)
        p = logits_to_proba(loaded.model.head(loaded.model.embed(batch)))
        return np.asarray(p.double().numpy())

    return permutation_importance(score, [rows[i] for i in keep], [labels[i] for i in keep], names)
