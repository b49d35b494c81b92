"""The serving runtime: a per-process cache of loaded model versions.

Loading a version reads its safetensors file, checks the sha256 and builds the model once;
predict calls then only encode rows and run a forward pass. Versions are immutable, so the
cache is keyed by (version id, weights sha256) and never goes stale; the live version is read
per request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch

from adaptive import artifacts
from adaptive.ml.architectures import TabularModel, build_model
from adaptive.ml.preprocessing import FeatureEncoder, input_spec, parse_schema
from adaptive.ml.weights import load_into, load_state_dict_bytes
from adaptive.models import Deployment, ModelVersion

_MAX_CACHED = 16


@dataclass
class LoadedVersion:
    version_id: int
    number: int
    encoder: FeatureEncoder
    model: TabularModel
    multiclass: bool

    @torch.inference_mode()
    def predict_proba(self, rows: list[dict]) -> torch.Tensor:
        """Binary: P(y=1) as [N]; multiclass: [N, C]. Raises RowError on a bad row."""
        batch = self.encoder.encode(rows)
        return self.model.predict_proba(batch)


_cache: OrderedDict[tuple[int, str], LoadedVersion] = OrderedDict()
_lock = threading.Lock()


def load_version(deployment: Deployment, version: ModelVersion) -> LoadedVersion:
    """The loaded model of a version, from this process's cache when possible."""
    cache_key = (version.pk, version.weights_sha256)
    with _lock:
        cached = _cache.get(cache_key)
        if cached is not None:
            _cache.move_to_end(cache_key)
            return cached
    schema = parse_schema(deployment.feature_schema)
    model = build_model(
        version.architecture, version.config, input_spec(schema, version.preprocessing), deployment.n_outputs
    )
    load_into(model, load_state_dict_bytes(artifacts.read_weights(version.weights_path, version.weights_sha256)))
    model.eval()
    loaded = LoadedVersion(
        version_id=version.pk,
        number=version.number,
        encoder=FeatureEncoder(schema, version.preprocessing),
        model=model,
        multiclass=deployment.n_outputs > 1,
    )
    with _lock:
        _cache[cache_key] = loaded
        while len(_cache) > _MAX_CACHED:
            _cache.popitem(last=False)
    return loaded


def clear_cache() -> None:
    with _lock:
        _cache.clear()
