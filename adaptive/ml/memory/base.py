"""The interface both error memories share, and what a read returns.

``ErrorMemory`` holds what does not depend on how rows are stored: the config, saving and loading
through ``state_dict``, and the checks every add and read applies to its inputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from adaptive.ml.memory.config import MAX_DIM, MAX_OUTPUTS, int_param
from adaptive.ml.memory.state import MemoryStateError, config_from_state_dict, config_to_tensors


@dataclass(frozen=True)
class Readout:
    """What a memory knows about a batch of query keys.

    ``y_bar`` and ``p_bar`` are [N] (binary) or [N, C] (multiclass): the attention-weighted mean
    label and base score of the neighbours. ``support`` [N] is the evidence behind them (each
    memory documents its measure). ``support == 0`` means nothing relevant is known, and
    compensation then leaves the score alone; an empty memory reads all zeros.
    """

    y_bar: torch.Tensor
    p_bar: torch.Tensor
    support: torch.Tensor


class ErrorMemory(ABC):
    """A store of ``(key, label, base score)`` rows read by key similarity.

    Keys are float [N, dim] and assumed L2-normalised (``compensation.extract_keys`` makes them so):
    similarity is a plain dot product, which is the cosine only for unit keys. Not thread-safe: one
    writer, and no reads during a write.
    """

    kind: ClassVar[str]
    # Constructor parameters beyond dim and n_outputs, with the type each must have: the kind's
    # entry of PARAMS_BY_KIND.
    PARAMS: ClassVar[Mapping[str, type]]

    def __init__(self, dim: int, n_outputs: int, device: torch.device | str = "cpu") -> None:
        self.dim = int_param("dim", dim, 1, MAX_DIM)
        self.n_outputs = int_param("n_outputs", n_outputs, 1, MAX_OUTPUTS)
        self.device = torch.device(device)
        # Reads of a CPU memory run their small steps in numpy, whose small ops cost far less than
        # torch's; on an accelerator they stay in torch. (Tests flip this to check that both paths
        # agree.)
        self._numpy_reads = self.device.type == "cpu"
        # Width of a stored label / score row: 1 for binary, C for multiclass (one-hot labels).
        self.width = 1 if n_outputs == 1 else n_outputs

    @abstractmethod
    def add(self, keys: torch.Tensor, labels: torch.Tensor, base_scores: torch.Tensor) -> None:
        """Store labeled rows: keys [N, dim], labels [N], base scores [N] or [N, C]."""

    @abstractmethod
    def estimate(self, keys: torch.Tensor) -> Readout:
        """Read the memory for query keys [N, dim]; the readout is on the keys' device."""

    @abstractmethod
    def __len__(self) -> int:
        """Rows the memory answers from (each kind documents what it counts)."""

    @property
    @abstractmethod
    def nbytes(self) -> int:
        """Bytes held by the memory's tensors (allocated capacity, not rows used)."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The kind-specific constructor parameters, JSON-ready."""

    @abstractmethod
    def clear(self) -> None:
        """Forget every row; the config (and the sketch's hyperplanes) stay."""

    @abstractmethod
    def _data_state(self) -> dict[str, torch.Tensor]:
        """The data part of ``state_dict`` (copies, so later adds leave a snapshot alone)."""

    @abstractmethod
    def _load_data_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Validate and load what ``_data_state`` wrote."""

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an empty twin: kind, dim, n_outputs and ``params()``."""
        return {"kind": self.kind, "dim": self.dim, "n_outputs": self.n_outputs, **self.params()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Plain CPU tensors (safetensors-ready): ``config.*`` entries plus the memory's data."""
        state = config_to_tensors(self.config())
        state.update({key: value.detach().to("cpu").contiguous() for key, value in self._data_state().items()})
        return state

    def load_state_dict(self, tensors: Mapping[str, torch.Tensor]) -> None:
        """Replace this memory's rows with a saved state of a memory with the same config.

        Raises ``MemoryStateError`` when the config differs or the data does not fit it; on error
        the memory is left as it was.
        """
        saved = config_from_state_dict(tensors)
        if saved != self.config():
            raise MemoryStateError(f"state dict is for a memory configured {saved}, not {self.config()}")
        self._load_data_state(tensors)

    # --- input checks shared by both kinds -------------------------------------------------------

    def _prepare_rows(
        self, keys: torch.Tensor, labels: torch.Tensor, base_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Validated float32 keys [N, D], targets [N, W] and scores [N, W] on the memory's device.

        Adds are off the serving path, so every value is checked here: a NaN or a class index out
        of range written into a memory would poison every later read near it.
        """
        keys = self._check_keys(keys)
        n = keys.shape[0]
        if n and not bool(torch.isfinite(keys).all()):
            raise ValueError("keys must be finite")
        if labels.dim() != 1 or labels.shape[0] != n:
            raise ValueError(f"labels must have shape [{n}], got {list(labels.shape)}")
        expected = [n] if self.n_outputs == 1 else [n, self.n_outputs]
        if list(base_scores.shape) != expected:
            raise ValueError(f"base_scores must have shape {expected}, got {list(base_scores.shape)}")
        labels = labels.to(self.device)
        scores = base_scores.to(self.device, torch.float32).reshape(n, self.width)
        if n and not bool(((scores >= 0) & (scores <= 1)).all()):
            raise ValueError("base_scores must be probabilities in [0, 1]")
        if self.n_outputs == 1:
            targets = labels.to(torch.float32).reshape(n, 1)
            if n and not bool(((targets >= 0) & (targets <= 1)).all()):
                raise ValueError("binary labels must be in [0, 1]")
        else:
            if labels.is_floating_point() or labels.dtype == torch.bool:
                raise ValueError(f"multiclass labels must be integer class indexes, got {labels.dtype}")
            if n and not bool(((labels >= 0) & (labels < self.n_outputs)).all()):
                raise ValueError(f"multiclass labels must be class indexes in 0..{self.n_outputs - 1}")
            targets = F.one_hot(labels.long(), self.n_outputs).to(torch.float32)
        return keys, targets, scores

    def _check_keys(self, keys: torch.Tensor) -> torch.Tensor:
        # Shape only: this runs on every read, and a value check would cost as much as a sketch read.
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must have shape [N, {self.dim}], got {list(keys.shape)}")
        return keys.to(self.device, torch.float32)

    def _readout(
        self, out_device: torch.device, y_bar: torch.Tensor, p_bar: torch.Tensor, support: torch.Tensor
    ) -> Readout:
        if self.n_outputs == 1:
            y_bar, p_bar = y_bar.squeeze(1), p_bar.squeeze(1)
        if out_device != self.device:
            y_bar, p_bar, support = y_bar.to(out_device), p_bar.to(out_device), support.to(out_device)
        return Readout(y_bar=y_bar, p_bar=p_bar, support=support)

    def _empty_readout(self, n: int, out_device: torch.device) -> Readout:
        zeros = torch.zeros(n, self.width, device=out_device)
        return self._readout(out_device, zeros, zeros.clone(), torch.zeros(n, device=out_device))
