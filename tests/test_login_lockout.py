"""Log-in lockout: repeated wrong passwords lock a username (and an address), the right one included."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.clock import Clock
from tests.factories import UserFactory

PASSWORD = "pw-for-tests-123"  # UserFactory's
LOCKED = "Too many failed log-ins"


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.LOGIN_FAILURES_LIMIT = 5
    settings.LOGIN_FAILURES_PER_IP = 20
    settings.LOGIN_LOCKOUT_SECONDS = 300


def _login(client: Client, username: str, password: str, **extra: Any) -> Any:
    return client.post("/accounts/login/", {"username": username, "password": password}, **extra)


def _logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_wrong_passwords_lock_the_username_even_for_the_right_one(clock: Clock, client: Client, db: None) -> None:
    UserFactory.create(username="olivia", role="operator")

    wrong = [_login(client, "olivia", f"guess-{n}") for n in range(5)]
    locked = _login(client, "olivia", PASSWORD)

    assert [r.status_code for r in wrong] == [200] * 5
    assert all("Wrong username or password" in r.content.decode() for r in wrong)
    assert locked.status_code == 429
    assert LOCKED in locked.content.decode()
    assert "5 more minute" in locked.content.decode()
    assert int(locked["Retry-After"]) == 300
    assert not _logged_in(client)
    assert client.get("/").status_code == 302  # to the log-in page

    # From another address too: the username is locked, not only this client.
    assert _login(Client(REMOTE_ADDR="10.1.2.3"), "olivia", PASSWORD).status_code == 429

    clock.now += 300
    assert _login(client, "olivia", PASSWORD).status_code == 302
    assert _logged_in(client)


def test_a_success_clears_the_usernames_count(clock: Clock, client: Client, db: None) -> None:
    UserFactory.create(username="olivia", role="operator")
    for n in range(4):
        _login(client, "olivia", f"guess-{n}")
    assert _login(client, "olivia", PASSWORD).status_code == 302
    client.post("/accounts/logout/")

    for n in range(4):
        _login(client, "olivia", f"again-{n}")

    assert _login(client, "olivia", PASSWORD).status_code == 302
    assert _logged_in(client)


def test_unknown_usernames_lock_the_same_way(clock: Clock, client: Client, db: None) -> None:
    # The lockout must not tell which usernames exist.
    answers = [_login(client, "nobody", f"guess-{n}").status_code for n in range(6)]

    assert answers == [200] * 5 + [429]


def test_many_usernames_from_one_address_lock_the_address(
    settings: Any, clock: Clock, client: Client, db: None
) -> None:
    settings.LOGIN_FAILURES_PER_IP = 6
    UserFactory.create(username="victor", role="viewer")
    for n in range(6):
        _login(client, f"user-{n}", "spray-password")

    locked = _login(client, "victor", PASSWORD)

    assert locked.status_code == 429
    assert not _logged_in(client)
    # The same user from another address logs in.
    elsewhere = Client(REMOTE_ADDR="10.9.8.7")
    assert _login(elsewhere, "victor", PASSWORD).status_code == 302


def test_no_lockout_when_turned_off(settings: Any, clock: Clock, client: Client, db: None) -> None:
    settings.LOGIN_FAILURES_LIMIT = 0
    settings.LOGIN_FAILURES_PER_IP = 0
    UserFactory.create(username="olivia", role="operator")
    for n in range(10):
        _login(client, "olivia", f"guess-{n}")

    assert _login(client, "olivia", PASSWORD).status_code == 302


def test_the_admin_login_locks_out_too(clock: Clock, client: Client, db: None) -> None:
    get_user_model().objects.create_superuser("root-admin", password=PASSWORD)
    for n in range(5):
        client.post("/admin/login/", {"username": "root-admin", "password": f"guess-{n}"})

    locked = client.post("/admin/login/?next=/admin/", {"username": "root-admin", "password": PASSWORD})

    assert locked.status_code == 200  # the admin's own view: the form again, with the reason
    assert LOCKED in locked.content.decode()
    assert not _logged_in(client)
    assert client.get("/admin/").status_code == 302
