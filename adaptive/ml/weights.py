"""Model weights as safetensors bytes: the only format the control room reads or writes.

Weight files arrive from users, so nothing here unpickles: ``safetensors`` parses a JSON header and
raw tensor bytes and cannot run code. A ``torch.save`` file (a zip or a bare pickle) is rejected by
the header check before any parser sees it.
"""

from __future__ import annotations

from typing import Final

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

# safetensors itself refuses headers above 100 MB; checking first gives a clearer message and
# avoids handing an obviously foreign file to the parser at all.
MAX_HEADER_BYTES: Final = 100_000_000
# How many problems load_into quotes in its exception; the rest are counted.
MAX_REPORTED_PROBLEMS: Final = 5


class WeightsError(ValueError):
    """Weights bytes are not a safetensors file, or do not fit the model."""


def state_dict_to_bytes(model: nn.Module) -> bytes:
    """Serialise ``model``'s state dict (parameters and persistent buffers) as safetensors bytes."""
    tensors = {key: value.detach().to("cpu").contiguous() for key, value in model.state_dict().items()}
    return safetensors_save(tensors, metadata={"format": "pt"})


def load_state_dict_bytes(data: bytes) -> dict[str, torch.Tensor]:
    """Parse safetensors bytes into CPU tensors; raises ``WeightsError`` for anything else."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise TypeError(f"weights must be bytes, got {type(data).__name__}")
    if len(data) < 8:
        raise WeightsError(f"not a safetensors file: {len(data)} bytes is too short")
    # The file starts with the header's length as a little-endian u64, then the JSON header.
    header_length = int.from_bytes(data[:8], "little")
    if header_length < 2 or header_length > MAX_HEADER_BYTES or 8 + header_length > len(data):
        raise WeightsError(
            f"not a safetensors file: header length {header_length} does not fit a {len(data)}-byte file"
        )
    if data[8:9] != b"{":
        raise WeightsError("not a safetensors file: the header is not a JSON object")
    try:
        return safetensors_load(data)
    except (SafetensorError, KeyError, ValueError, RuntimeError) as exc:
        # KeyError: a dtype safetensors parses but this torch build lacks.
        raise WeightsError(f"not a safetensors file: {exc}") from exc


def check_state_dict(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Human-readable reasons why ``tensors`` cannot be loaded into ``model``; empty when they can.

    Reports missing and unexpected keys, shape mismatches (``"output.weight: expected (1, 40), got
    (1, 32)"``), integer tensors for floating-point parameters, and non-finite weights.
    """
    expected = model.state_dict()
    problems = [f"{key}: missing" for key in expected if key not in tensors]
    problems += [f"{key}: unexpected (the model has no such parameter)" for key in tensors if key not in expected]
    for key, want in expected.items():
        got = tensors.get(key)
        if got is None:
            continue
        if tuple(got.shape) != tuple(want.shape):
            problems.append(f"{key}: expected {tuple(want.shape)}, got {tuple(got.shape)}")
            continue
        if want.is_floating_point():
            if not got.is_floating_point():
                problems.append(f"{key}: expected a floating-point dtype, got {got.dtype}")
            elif not bool(torch.isfinite(got).all()):
                problems.append(f"{key}: contains NaN or infinite values")
        elif got.dtype != want.dtype:
            problems.append(f"{key}: expected {want.dtype}, got {got.dtype}")
    return problems


def load_into(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load ``tensors`` into ``model`` strictly, or raise ``WeightsError`` listing what does not fit."""
    problems = check_state_dict(model, tensors)
    if problems:
        shown = "; ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - MAX_REPORTED_PROBLEMS
        suffix = f"; and {more} more" if more > 0 else ""
        raise WeightsError(f"weights do not fit the model: {shown}{suffix}")
    model.load_state_dict(tensors, strict=True)
