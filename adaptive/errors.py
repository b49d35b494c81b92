"""Domain errors that entry points turn into clear responses (HTTP 400/404/409)."""

from __future__ import annotations


class InvalidInput(ValueError):
    """Bad input: names the field (and the row index, for batches) and the reason."""

    def __init__(self, field: str, reason: str, *, index: int | None = None) -> None:
        self.field = field
        self.reason = reason
        self.index = index
        where = f"rows[{index}].{field}" if index is not None else field
        super().__init__(f"{where}: {reason}")


class Conflict(RuntimeError):
    """The request is valid but the current state does not allow it (HTTP 409)."""
