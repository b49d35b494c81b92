"""Production hashes passwords with a slow, salted key-derivation function.

The tests swap in a fast hasher (tests/conftest.py); this reads the settings module itself, so the
swap cannot hide a weak production default.
"""

from __future__ import annotations

from django.conf import global_settings

from config import settings as production

STRONG = {
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
}


def test_new_passwords_are_hashed_with_a_slow_kdf_in_production() -> None:
    hashers = getattr(production, "PASSWORD_HASHERS", global_settings.PASSWORD_HASHERS)
    assert hashers[0] in STRONG
