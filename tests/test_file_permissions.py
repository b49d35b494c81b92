"""Secrets on disk are their owner's only: the embedded SQLite database, the secret key, key and token files.

The database checks run Django in a child process with umask 022 (files 0644 unless the code sees
to it) on a fresh VAR_DIR, as bin/up's processes would; they hold on both test passes, since the
child always runs the embedded defaults.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# Open the database, write (SQLite then creates -wal and -shm), reconnect, as a web process does; and,
# with the last connection still open (closing it removes -wal and -shm), print every file's mode.
OPEN_AND_WRITE = """
import json, pathlib, django
django.setup()
from django.conf import settings
from django.core.management import call_command
from django.db import connection
for attempt in range(2):
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS probe (x integer)")
        cursor.execute("INSERT INTO probe VALUES (1)")
modes = {p.name: p.stat().st_mode & 0o777 for p in pathlib.Path(settings.VAR_DIR).glob("db.sqlite3*")}
print(json.dumps(modes))
"""
SECRET = "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def _django(var_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    }
    env.update(VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="config.settings", SECRET_KEY=SECRET, HTTPS="0")
    command = 'umask 022 && exec "$@"'
    return subprocess.run(
        ["sh", "-c", command, "sh", sys.executable, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_a_new_embedded_database_and_its_wal_files_are_created_0600_quietly(tmp_path: Path) -> None:
    run = _django(tmp_path, "-c", OPEN_AND_WRITE)

    assert run.returncode == 0, run.stderr
    modes = json.loads(run.stdout)
    assert modes == {"db.sqlite3": 0o600, "db.sqlite3-wal": 0o600, "db.sqlite3-shm": 0o600}
    assert _mode(tmp_path / "db.sqlite3") == 0o600
    assert "readable by others" not in run.stderr


def test_an_existing_world_readable_database_is_restricted_with_one_warning(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite3"
    sqlite3.connect(database).close()
    database.chmod(0o644)

    run = _django(tmp_path, "-c", OPEN_AND_WRITE)

    assert run.returncode == 0, run.stderr
    assert set(json.loads(run.stdout).values()) == {0o600}
    assert _mode(database) == 0o600
    assert run.stderr.count(f"{database} was readable by others (mode 644): set to 600") == 1, run.stderr


def test_manage_py_check_warns_about_secret_files_others_may_read(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    (tmp_path / "demo").mkdir()
    loose = [tmp_path / "secret_key", tmp_path / "admin-token", tmp_path / "demo" / "flights-ingestion-key"]
    for path in loose:
        path.write_text("secret\n")
        path.chmod(0o640)
    private = tmp_path / "admin-password"
    private.write_text("secret\n")
    private.chmod(0o600)

    output = _check()

    for path in loose:
        assert f"{path} is readable by other users (mode 640)" in output, output
        assert f"chmod 600 {path}" in output
    assert str(private) not in output
    assert output.count("adaptive.W001") == len(loose)
    for path in loose:
        path.chmod(0o600)
    assert "adaptive.W001" not in _check()


def _check() -> str:
    """``manage.py check``'s report; warnings do not fail it (the server still starts)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("check", stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


@pytest.mark.django_db
def test_the_test_database_itself_is_0600_on_the_embedded_pass() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL: no database file")
    assert _mode(Path(connection.settings_dict["NAME"])) == 0o600
