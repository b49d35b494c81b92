"""Settings come from the environment and production settings pass Django's deploy checks."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DJANGO_DEBUG", "SECRET_KEY", "HTTPS"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def test_production_settings_pass_check_deploy():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="cr.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_secret_key_is_required_outside_debug():
    result = _manage("check")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_runs_without_secret_key():
    assert _manage("check", DJANGO_DEBUG="1").returncode == 0


def test_bad_boolean_in_environment_fails_loudly():
    result = _manage("check", SECRET_KEY="x" * 60, HTTPS="maybe")
    assert result.returncode != 0
    assert "HTTPS must be one of" in result.stderr


def test_bad_device_choice_fails_loudly():
    result = _manage("check", SECRET_KEY="x" * 60, ADAPTIVE_DEVICE="tpu")
    assert "ADAPTIVE_DEVICE must be one of" in result.stderr
