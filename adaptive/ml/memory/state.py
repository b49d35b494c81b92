"""A memory's state as plain tensors, so that it can be saved with safetensors and loaded without pickle.

``ErrorMemory.state_dict()`` writes the config as ``config.*`` entries (the kind as its ASCII bytes,
numbers as 0-d tensors) next to the kind's data tensors; this module writes and reads the config
part and holds the checks every loader applies to what it reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from adaptive.ml.memory.config import PARAMS_BY_KIND


class MemoryStateError(ValueError):
    """A state dict does not describe a memory, or not this memory."""


def config_to_tensors(config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """``ErrorMemory.config()`` as ``config.*`` tensors; a None param is left out."""
    # safetensors holds tensors only: the kind travels as its ASCII bytes, numbers as 0-d tensors.
    tensors = {"config.kind": torch.tensor(list(config["kind"].encode("ascii")), dtype=torch.uint8)}
    for name, value in config.items():
        if name == "kind" or value is None:
            continue
        dtype = torch.float64 if isinstance(value, float) else torch.int64
        tensors[f"config.{name}"] = torch.tensor(value, dtype=dtype)
    return tensors


def config_from_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The config stored in a state dict's ``config.*`` entries (as ``ErrorMemory.config()``)."""
    kind = _decode_text(tensor_entry(tensors, "config.kind", torch.uint8, 1))
    if kind not in PARAMS_BY_KIND:
        raise MemoryStateError(f"unknown memory kind {kind!r} in state dict")
    config: dict[str, Any] = {"kind": kind}
    fields = {"dim": int, "n_outputs": int, **PARAMS_BY_KIND[kind]}
    for name, kind_type in fields.items():
        key = f"config.{name}"
        if key not in tensors:
            # An absent optional param (the sketch's half_life or prior) was None when saved; a
            # sketch saved before ``prior`` existed so loads with the plain read it was built for.
            config[name] = None
            continue
        config[name] = scalar_int(tensors, key) if kind_type is int else scalar_float(tensors, key)
    return config


def tensor_entry(tensors: Mapping[str, torch.Tensor], key: str, dtype: torch.dtype, ndim: int) -> torch.Tensor:
    """The ``key`` entry, which must be a ``ndim``-d tensor of ``dtype``."""
    value = tensors.get(key)
    if not isinstance(value, torch.Tensor):
        raise MemoryStateError(f"{key}: missing")
    if value.dtype != dtype or value.dim() != ndim:
        raise MemoryStateError(f"{key}: expected a {ndim}-d {dtype} tensor, got {value.dim()}-d {value.dtype}")
    return value


def scalar_int(tensors: Mapping[str, torch.Tensor], key: str) -> int:
    """The ``key`` entry, a 0-d int64 tensor, as an int."""
    return int(tensor_entry(tensors, key, torch.int64, 0).item())


def scalar_float(tensors: Mapping[str, torch.Tensor], key: str) -> float:
    """The ``key`` entry, a 0-d float64 tensor, as a float."""
    return float(tensor_entry(tensors, key, torch.float64, 0).item())


def expect_shape(name: str, tensor: torch.Tensor, shape: tuple[int, ...]) -> None:
    """Raise ``MemoryStateError`` unless ``tensor`` has ``shape``."""
    if tuple(tensor.shape) != shape:
        raise MemoryStateError(f"{name}: expected shape {shape}, got {tuple(tensor.shape)}")


def _decode_text(tensor: torch.Tensor) -> str:
    try:
        return bytes(tensor.tolist()).decode("ascii")
    except UnicodeDecodeError as exc:
        raise MemoryStateError("config.kind is not ASCII text") from exc
