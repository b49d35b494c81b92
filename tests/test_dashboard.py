"""The placeholder dashboard needs a login and lists deployments."""

from __future__ import annotations

import pytest

from tests.factories import UserFactory


@pytest.mark.django_db
def test_dashboard_redirects_anonymous_users_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_session_login_then_overview_lists_the_deployment(client, deployment):
    UserFactory(username="olivia", role="viewer")
    response = client.post("/accounts/login/", {"username": "olivia", "password": "pw-for-tests-123"})
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    text = page.content.decode()
    assert deployment.slug in text
    assert "v1" in text
    assert "(viewer)" in text


@pytest.mark.django_db
def test_wrong_password_is_refused(client):
    UserFactory(username="olivia", role="viewer")
    response = client.post("/accounts/login/", {"username": "olivia", "password": "nope"})
    assert response.status_code == 200
    assert "Wrong username or password" in response.content.decode()
