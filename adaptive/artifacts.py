"""Artifact storage for model weights: content-addressed files under ARTIFACT_ROOT."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings


def root() -> Path:
    return Path(settings.ARTIFACT_ROOT)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_weights(deployment_slug: str, data: bytes) -> tuple[str, str]:
    """Write weights once (by content hash) and return (relative path, sha256).

    The file is written to a temporary name and renamed, so a reader never sees half a file and
    a retried upload of the same bytes reuses the same file.
    """
    digest = sha256_of(data)
    relative = f"{deployment_slug}/{digest}.safetensors"
    target = root() / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return relative, digest


def read_weights(relative: str, expected_sha256: str) -> bytes:
    """Read a stored weights file and refuse it if its content changed since upload."""
    data = (root() / relative).read_bytes()
    digest = sha256_of(data)
    if digest != expected_sha256:
        raise ValueError(f"weights file {relative} has sha256 {digest}, expected {expected_sha256}")
    return data
