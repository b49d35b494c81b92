"""Settings come from the environment and production settings pass Django's deploy checks."""

from __future__ import annotations

import io
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


def test_a_bad_rate_in_environment_fails_loudly():
    result = _manage("check", SECRET_KEY="x" * 60, AUTH_FAILURES_PER_IP="lots")
    assert result.returncode != 0
    assert "AUTH_FAILURES_PER_IP: 'lots' is not a rate" in result.stderr


def test_the_cache_may_not_share_the_brokers_redis_database():
    # Tests clear the cache per test, which flushes its whole Redis database: the queues with it.
    url = "redis://127.0.0.1:6379/3"
    result = _manage("check", SECRET_KEY="x" * 60, CELERY_BROKER_URL=url, CACHE_URL=url)
    assert result.returncode != 0
    assert "CACHE_URL must be another Redis database" in result.stderr


def test_passwords_shorter_than_12_characters_are_refused(client, db):
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.create_superuser("root-admin", password="pw-for-tests-123")
    client.force_login(admin)
    form = {"username": "newbie", "usable_password": "true"}

    short = client.post("/admin/auth/user/add/", {**form, "password1": "Tr0ub4dor&3", "password2": "Tr0ub4dor&3"})
    assert short.status_code == 200
    assert "at least 12 characters" in short.content.decode()
    assert not get_user_model().objects.filter(username="newbie").exists()

    ok = client.post("/admin/auth/user/add/", {**form, "password1": "Tr0ub4dor&3x", "password2": "Tr0ub4dor&3x"})
    assert ok.status_code == 302
    assert get_user_model().objects.get(username="newbie").check_password("Tr0ub4dor&3x")


def test_ensure_admin_makes_a_password_that_passes_the_validators(settings, tmp_path, db):
    from django.contrib.auth.password_validation import validate_password
    from django.core.management import call_command

    settings.VAR_DIR = tmp_path
    call_command("ensure_admin", "--username", "first-admin", stdout=io.StringIO())

    password = (tmp_path / "admin-password").read_text().strip()
    assert len(password) >= 12
    validate_password(password)
