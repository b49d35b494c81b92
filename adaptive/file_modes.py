"""Files only their owner may read: the embedded SQLite database, the secret key, key and token files.

On the embedded defaults the database under ``VAR_DIR`` holds password and token hashes and every
event; SQLite creates it (and its ``-wal``/``-shm`` files, which take the database's mode) with the
process's umask, usually 0644. ``restrict_sqlite_files`` runs when Django opens a connection and
sets an embedded database it owns to 0600, warning once when a file that was already there was
readable by others; adaptive.checks reports loose files in ``manage.py check``.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")

# Database files this process has already restricted (a SQLite connection is opened per request).
_restricted: set[Path] = set()
# Embedded database files that existed when the process started: only those deserve a warning
# (a database SQLite just created is 0644 by umask for a moment, which is not the operator's doing).
_existing_at_start: set[Path] = set()


def loose_bits(path: Path) -> int | None:
    """The group/other permission bits of ``path`` when it exists and has any, else None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    bits = stat.S_IMODE(mode) & 0o077
    return bits or None


def embedded_sqlite_path(settings_dict: Mapping[str, Any]) -> Path | None:
    """The file of a SQLite database under VAR_DIR (the embedded default and its test database), else None."""
    if settings_dict.get("ENGINE") != "django.db.backends.sqlite3":
        return None
    name = str(settings_dict.get("NAME") or "")
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    path = Path(name).resolve()
    return path if path.is_relative_to(Path(settings.VAR_DIR).resolve()) else None


def sqlite_files(database: Path) -> list[Path]:
    return [database.with_name(database.name + suffix) for suffix in SQLITE_SUFFIXES]


def private_files() -> list[Path]:
    """Every file under VAR_DIR that holds a secret, whether it exists or not."""
    var = Path(settings.VAR_DIR)
    files = [var / "secret_key", var / "admin-password", var / "admin-token", var / "demo" / "operator-token"]
    files += sorted((var / "demo").glob("*-ingestion-key"))
    database = embedded_sqlite_path(settings.DATABASES["default"])
    if database is not None:
        files += sqlite_files(database)
    return files


def note_existing_files() -> None:
    """Remember which embedded database files exist before any connection (called by AppConfig.ready)."""
    database = embedded_sqlite_path(settings.DATABASES["default"])
    if database is not None:
        _existing_at_start.update(path for path in sqlite_files(database) if path.exists())


def restrict_sqlite_files(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: an embedded SQLite database this process owns becomes 0600."""
    database = embedded_sqlite_path(connection.settings_dict)
    if database is None or database in _restricted:
        return
    for path in sqlite_files(database):
        bits = loose_bits(path)
        if bits is None:
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.stat().st_uid != os.geteuid():
            log.warning("%s is readable by others (mode %o) and not ours to change: chmod 600 it", path, mode)
            continue
        path.chmod(PRIVATE_MODE)
        if path in _existing_at_start:
            log.warning("%s was readable by others (mode %o): set to 600", path, mode)
    _restricted.add(database)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, replacing any old file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
