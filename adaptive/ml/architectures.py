"""Built-in PyTorch architectures for tabular data, and the registry that builds them from config.

Every architecture splits into ``embed(batch) -> h`` (the last hidden layer) and ``head(h) -> logits``
so that ``forward = head(embed(batch))``: the error memory keys events by ``h`` and the serving path
computes ``h`` once for both the key and the base score.

Configs come from users (stored with a model version as JSON), so ``build_model`` validates them;
the constructors themselves trust their arguments.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final, Self

import torch
from torch import nn

from adaptive.ml.preprocessing import InputSpec, TabularBatch

MAX_HIDDEN_WIDTH: Final = 4096
MAX_HIDDEN_LAYERS: Final = 16
MAX_EMBEDDING_DIM: Final = 512

DEFAULT_HIDDEN: Final = (64, 32)
DEFAULT_EMBEDDING_DIM: Final = 8


class ArchitectureError(ValueError):
    """An architecture name, config or input spec is not usable."""


def logits_to_proba(logits: torch.Tensor) -> torch.Tensor:
    """Probabilities from logits: sigmoid -> [N] for one output (binary), softmax -> [N, C] otherwise."""
    if logits.shape[-1] == 1:
        return torch.sigmoid(logits.squeeze(-1))
    return torch.softmax(logits, dim=-1)


class TabularModel(nn.Module, ABC):
    """Base of every architecture: ``forward(batch) == head(embed(batch))``.

    ``hidden_dim`` is the width of ``embed``'s output; ``n_outputs`` is 1 for a binary task (one
    logit) and the number of classes for a multiclass one. ``config`` is the full, JSON-ready config
    the model was built with (defaults filled in), to be stored next to the weights.
    """

    architecture: ClassVar[str]
    hidden_dim: int

    def __init__(self, spec: InputSpec, n_outputs: int) -> None:
        super().__init__()
        self.spec = spec
        self.n_outputs = n_outputs
        self.config: dict[str, Any] = {}

    @classmethod
    @abstractmethod
    def from_config(cls, spec: InputSpec, n_outputs: int, config: Mapping[str, Any]) -> Self:
        """Build from a config that ``resolve_config`` has already validated and completed."""

    @abstractmethod
    def embed(self, batch: TabularBatch) -> torch.Tensor:
        """The last hidden layer, [N, hidden_dim]."""

    @abstractmethod
    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Logits [N, n_outputs] from the last hidden layer."""

    def forward(self, batch: TabularBatch) -> torch.Tensor:
        """Logits [N, n_outputs]."""
        return self.head(self.embed(batch))

    def predict_proba(self, batch: TabularBatch) -> torch.Tensor:
        """Probabilities: [N] (positive class) for a binary model, [N, C] for a multiclass one.

        Gradients are tracked as usual; callers serving predictions wrap this in ``torch.no_grad()``
        (or ``inference_mode``) and put the model in ``eval()`` mode.
        """
        return logits_to_proba(self(batch))


def _categorical_embeddings(cardinalities: Sequence[int], dim: int, std: float | None) -> nn.ModuleList:
    # One table per field rather than one table with offsets: an out-of-range index then fails
    # instead of silently reading another field's rows, and a weights mismatch names the field
    # ("embeddings.3.weight: expected (12, 8), got (10, 8)").
    tables = [nn.Embedding(cardinality, dim) for cardinality in cardinalities]
    if std is not None:
        for table in tables:
            nn.init.normal_(table.weight, std=std)
    return nn.ModuleList(tables)


def _lookup(tables: nn.ModuleList, categorical: torch.Tensor, dim: int, like: torch.Tensor) -> torch.Tensor:
    """Field embeddings [N, n_categorical, dim] (an empty middle dimension when there are none)."""
    if len(tables) == 0:
        return like.new_zeros((categorical.shape[0], 0, dim))
    return torch.stack([table(categorical[:, j]) for j, table in enumerate(tables)], dim=1)


def _hidden_layers(in_dim: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = width
    return nn.Sequential(*layers)


class MLP(TabularModel):
    """Categorical embeddings concatenated with the numeric inputs, then ReLU hidden layers."""

    architecture = "mlp"

    def __init__(
        self,
        spec: InputSpec,
        n_outputs: int,
        *,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        embedding_dim: int = DEFAULT_EMBEDDING_DIM,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(spec, n_outputs)
        self.config = {"hidden": list(hidden), "embedding_dim": embedding_dim, "dropout": dropout}
        self.embedding_dim = embedding_dim
        # nn.Embedding's N(0, 1) initialisation matches the scale of standardised numeric inputs.
        self.embeddings = _categorical_embeddings(spec.cardinalities, embedding_dim, std=None)
        in_dim = spec.n_numeric + spec.n_categorical * embedding_dim
        self.layers = _hidden_layers(in_dim, hidden, dropout)
        self.hidden_dim = hidden[-1]
        # Named "output", not "head": the attribute would shadow the head() method.
        self.output = nn.Linear(self.hidden_dim, n_outputs)

    @classmethod
    def from_config(cls, spec: InputSpec, n_outputs: int, config: Mapping[str, Any]) -> Self:
        """Build from a resolved config (``hidden``, ``embedding_dim``, ``dropout``)."""
        return cls(
            spec,
            n_outputs,
            hidden=tuple(config["hidden"]),
            embedding_dim=config["embedding_dim"],
            dropout=config["dropout"],
        )

    def embed(self, batch: TabularBatch) -> torch.Tensor:
        """ReLU activations of the last hidden layer, [N, hidden[-1]]."""
        fields = _lookup(self.embeddings, batch.categorical, self.embedding_dim, batch.numeric)
        h: torch.Tensor = self.layers(torch.cat([batch.numeric, fields.flatten(1)], dim=1))
        return h

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Linear(hidden[-1], n_outputs)."""
        logits: torch.Tensor = self.output(h)
        return logits


class DeepFM(TabularModel):
    """DeepFM (Guo et al., 2017) over categorical and numeric fields.

    Every field gets a vector of size ``embedding_dim``: categorical fields from their embedding
    table, numeric field ``j`` as ``x_j * w_j`` with one learned vector ``w_j`` per field. The same
    field vectors ``v_1..v_F`` feed the factorisation machine and the deep MLP.

    The last hidden layer ``h`` is ``[deep, fm, first_order]``:

    * ``deep``: the MLP's last hidden layer over the concatenated field vectors;
    * ``fm = 0.5 * ((sum_i v_i)^2 - sum_i v_i^2)`` element-wise, [N, embedding_dim]: the FM
      second-order interactions before the sum over dimensions (the head's weights take that sum);
    * ``first_order``: the FM's linear term ``sum_i w_i(x_i)`` as one extra column.

    Carrying the first-order term inside ``h`` is a deliberate choice: ``head`` stays a single Linear
    over ``h``, so ``forward == head(embed(x))`` holds exactly and the error memory's key sees every
    input of the score. The head learns one weight per output for the term (and its bias plays the
    FM's global bias), which for a binary model is the classic DeepFM sum up to a learned scale.
    """

    architecture = "deepfm"

    def __init__(
        self,
        spec: InputSpec,
        n_outputs: int,
        *,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        embedding_dim: int = DEFAULT_EMBEDDING_DIM,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(spec, n_outputs)
        self.config = {"hidden": list(hidden), "embedding_dim": embedding_dim, "dropout": dropout}
        self.embedding_dim = embedding_dim
        # Small initial vectors: the FM term sums F*(F-1)/2 pairwise products, and N(0, 1) vectors
        # would start it in the hundreds for a few dozen fields.
        self.embeddings = _categorical_embeddings(spec.cardinalities, embedding_dim, std=0.1)
        self.numeric_vectors = nn.Parameter(torch.randn(spec.n_numeric, embedding_dim) * 0.1)
        # First-order weights start at zero (as in a linear model) and are learned through the head.
        self.first_order_categorical = _categorical_embeddings(spec.cardinalities, 1, std=0.0)
        self.first_order_numeric = nn.Parameter(torch.zeros(spec.n_numeric))
        n_fields = spec.n_numeric + spec.n_categorical
        self.layers = _hidden_layers(n_fields * embedding_dim, hidden, dropout)
        self.hidden_dim = hidden[-1] + embedding_dim + 1
        self.output = nn.Linear(self.hidden_dim, n_outputs)

    @classmethod
    def from_config(cls, spec: InputSpec, n_outputs: int, config: Mapping[str, Any]) -> Self:
        """Build from a resolved config (``hidden``, ``embedding_dim``, ``dropout``)."""
        return cls(
            spec,
            n_outputs,
            hidden=tuple(config["hidden"]),
            embedding_dim=config["embedding_dim"],
            dropout=config["dropout"],
        )

    def embed(self, batch: TabularBatch) -> torch.Tensor:
        """``[deep, fm, first_order]``, [N, hidden[-1] + embedding_dim + 1]."""
        numeric, categorical = batch.numeric, batch.categorical
        fields = torch.cat(
            [
                numeric.unsqueeze(-1) * self.numeric_vectors,
                _lookup(self.embeddings, categorical, self.embedding_dim, numeric),
            ],
            dim=1,
        )  # [N, F, d]
        summed = fields.sum(dim=1)
        fm = 0.5 * (summed * summed - (fields * fields).sum(dim=1))
        deep: torch.Tensor = self.layers(fields.flatten(1))
        first_order = numeric @ self.first_order_numeric
        first_order = first_order + _lookup(self.first_order_categorical, categorical, 1, numeric).sum(dim=(1, 2))
        return torch.cat([deep, fm, first_order.unsqueeze(1)], dim=1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Linear(hidden[-1] + embedding_dim + 1, n_outputs)."""
        logits: torch.Tensor = self.output(h)
        return logits


ARCHITECTURES: Final[dict[str, type[TabularModel]]] = {"mlp": MLP, "deepfm": DeepFM}

# Both built-ins take the same keys; a future architecture with other knobs gets its own entry.
_CONFIG_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "mlp": ("hidden", "embedding_dim", "dropout"),
    "deepfm": ("hidden", "embedding_dim", "dropout"),
}


def resolve_config(name: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validate ``config`` for architecture ``name`` and return it with defaults filled in.

    The result is plain JSON (``hidden`` as a list), ready to store with a model version.
    """
    if name not in ARCHITECTURES:
        raise ArchitectureError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        raise ArchitectureError(f"{name} config must be an object, got {type(config).__name__}")
    allowed = _CONFIG_KEYS[name]
    unknown = sorted(str(key) for key in config if key not in allowed)
    if unknown:
        raise ArchitectureError(
            f"unknown config keys for {name}: {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
    hidden = config.get("hidden", list(DEFAULT_HIDDEN))
    if (
        not isinstance(hidden, (list, tuple))
        or not 1 <= len(hidden) <= MAX_HIDDEN_LAYERS
        or not all(_is_int(width) and 1 <= width <= MAX_HIDDEN_WIDTH for width in hidden)
    ):
        raise ArchitectureError(
            f"{name} config: hidden must be a list of 1 to {MAX_HIDDEN_LAYERS} integers in "
            f"1..{MAX_HIDDEN_WIDTH}, got {hidden!r}"
        )
    embedding_dim = config.get("embedding_dim", DEFAULT_EMBEDDING_DIM)
    if not _is_int(embedding_dim) or not 1 <= embedding_dim <= MAX_EMBEDDING_DIM:
        raise ArchitectureError(
            f"{name} config: embedding_dim must be an integer in 1..{MAX_EMBEDDING_DIM}, got {embedding_dim!r}"
        )
    dropout = config.get("dropout", 0.0)
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float))
        or not math.isfinite(dropout)
        or not 0 <= dropout < 1
    ):
        raise ArchitectureError(f"{name} config: dropout must be a number in [0, 1), got {dropout!r}")
    return {
        "hidden": [int(width) for width in hidden],
        "embedding_dim": embedding_dim,
        "dropout": float(dropout),
    }


def build_model(name: str, config: Mapping[str, Any] | None, spec: InputSpec, n_outputs: int) -> TabularModel:
    """Build architecture ``name`` from a user-supplied ``config`` for inputs ``spec``.

    Raises ``ArchitectureError`` for an unknown name, unknown config keys, bad values, an input spec
    without features or an ``n_outputs`` below 1 (1 means binary; C >= 2 classes means multiclass).
    """
    resolved = resolve_config(name, config)
    if not _is_int(n_outputs) or n_outputs < 1:
        raise ArchitectureError(f"n_outputs must be a positive integer, got {n_outputs!r}")
    if not _is_int(spec.n_numeric) or spec.n_numeric < 0:
        raise ArchitectureError(f"input spec: n_numeric must be >= 0, got {spec.n_numeric!r}")
    if not all(_is_int(cardinality) and cardinality >= 1 for cardinality in spec.cardinalities):
        raise ArchitectureError(f"input spec: cardinalities must be positive integers, got {spec.cardinalities!r}")
    if spec.n_numeric + spec.n_categorical == 0:
        raise ArchitectureError("input spec has no features")
    return ARCHITECTURES[name].from_config(spec, n_outputs, resolved)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
