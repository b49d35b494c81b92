"""Building a memory from user-supplied params, or from a saved state dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import torch

from adaptive.ml.memory.base import ErrorMemory
from adaptive.ml.memory.config import MEMORY_KINDS, MemoryConfigError
from adaptive.ml.memory.exact import ExactMemory
from adaptive.ml.memory.sketch import SketchMemory
from adaptive.ml.memory.state import MemoryStateError, config_from_state_dict

_MEMORIES: Final[dict[str, type[ExactMemory] | type[SketchMemory]]] = {"exact": ExactMemory, "sketch": SketchMemory}


def make_memory(
    kind: str, dim: int, n_outputs: int, *, device: torch.device | str = "cpu", **params: Any
) -> ErrorMemory:
    """Build a memory of ``kind`` ("exact" or "sketch") from user-supplied ``params``.

    Unknown params and bad values raise ``MemoryConfigError``; missing ones take the defaults of
    ``adaptive.ml.memory.config``. ``exact``: capacity, k, tau. ``sketch``: n_tables, n_bits, tau,
    seed, half_life, prior.
    """
    if kind not in _MEMORIES:
        raise MemoryConfigError(f"unknown memory kind {kind!r}; known: {', '.join(MEMORY_KINDS)}")
    cls = _MEMORIES[kind]
    unknown = sorted(name for name in params if name not in cls.PARAMS)
    if unknown:
        raise MemoryConfigError(
            f"unknown {kind} memory params: {', '.join(unknown)}; allowed: {', '.join(sorted(cls.PARAMS))}"
        )
    return cls(dim, n_outputs, device=device, **params)


def memory_from_state_dict(tensors: Mapping[str, torch.Tensor], *, device: torch.device | str = "cpu") -> ErrorMemory:
    """Rebuild a memory, config and rows, from ``state_dict()`` output (e.g. loaded safetensors)."""
    config = config_from_state_dict(tensors)
    kind, dim, n_outputs = config.pop("kind"), config.pop("dim"), config.pop("n_outputs")
    if dim is None or n_outputs is None:
        raise MemoryStateError("state dict lacks config.dim or config.n_outputs")
    try:
        memory = make_memory(kind, dim, n_outputs, device=device, **config)
    except MemoryConfigError as exc:
        raise MemoryStateError(f"state dict config is not usable: {exc}") from exc
    memory.load_state_dict(tensors)
    return memory
