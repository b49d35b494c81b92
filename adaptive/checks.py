"""System checks (``manage.py check``, and every command that runs checks, e.g. ``migrate``)."""

from __future__ import annotations

import stat
from typing import Any

from django.core.checks import CheckMessage, Tags, register
from django.core.checks import Warning as CheckWarning

from adaptive.file_modes import loose_bits, private_files


def register_checks() -> None:
    """Called by AppConfig.ready."""
    register(check_private_files, Tags.security)


def check_private_files(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A warning per secret-holding file under VAR_DIR that others may read (see adaptive.file_modes)."""
    warnings: list[CheckMessage] = []
    for path in private_files():
        if loose_bits(path) is None:
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        warnings.append(
            CheckWarning(
                f"{path} is readable by other users (mode {mode:o}); it holds secrets.",
                hint=f"chmod 600 {path}",
                obj=str(path),
                id="adaptive.W001",
            )
        )
    return warnings
