"""Dashboard pages: login, roles (controls only for operators, refused actions for viewers), the
shells each page renders, and the front-end assets served by the app itself."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from adaptive.models import AuditEntry, Deployment
from tests.factories import DeploymentFactory, UserFactory

pytestmark = pytest.mark.django_db

PAGES = ["/", "/deployments/{slug}/", "/deployments/{slug}/versions/", "/jobs/", "/audit/"]


def _login(client: Client, role: str | None) -> Client:
    user = UserFactory.create(role=role)
    assert client.login(username=user.username, password="pw-for-tests-123")
    client.user = user  # type: ignore[attr-defined]
    return client


def test_dashboard_redirects_anonymous_users_to_login(client, deployment):
    for page in PAGES:
        response = client.get(page.format(slug=deployment.slug))
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_session_login_then_overview(client, deployment):
    UserFactory.create(username="olivia", role="viewer")
    response = client.post("/accounts/login/", {"username": "olivia", "password": "pw-for-tests-123"})
    assert response.status_code == 302
    page = client.get("/")
    assert page.status_code == 200
    text = page.content.decode()
    assert 'data-role="viewer"' in text
    assert 'id="deployments"' in text
    assert "olivia · viewer" in text


def test_wrong_password_is_refused(client):
    UserFactory.create(username="olivia", role="viewer")
    response = client.post("/accounts/login/", {"username": "olivia", "password": "nope"})
    assert response.status_code == 200
    assert "Wrong username or password" in response.content.decode()


def test_a_user_without_a_role_gets_a_403_page_on_every_page(client, deployment):
    _login(client, None)
    for page in PAGES:
        response = client.get(page.format(slug=deployment.slug))
        assert response.status_code == 403
        assert "has no role" in response.content.decode()


def test_every_page_renders_for_a_viewer(client, deployment):
    _login(client, "viewer")
    for page in PAGES:
        assert client.get(page.format(slug=deployment.slug)).status_code == 200


def test_unknown_deployment_is_404(client, db):
    _login(client, "viewer")
    assert client.get("/deployments/nope/").status_code == 404
    assert client.get("/deployments/nope/versions/").status_code == 404


def test_viewer_sees_no_controls_and_a_read_only_settings_form(client, deployment):
    _login(client, "viewer")
    text = client.get(f"/deployments/{deployment.slug}/").content.decode()
    assert "data-action=" not in text
    assert 'id="controls"' not in text
    assert "Save settings" not in text
    assert 'id="setting-memory_k"' in text
    assert "disabled" in text
    versions = client.get(f"/deployments/{deployment.slug}/versions/").content.decode()
    assert 'id="compare-form"' not in versions


def test_operator_sees_every_control_and_the_settings_form(client, deployment):
    _login(client, "operator")
    text = client.get(f"/deployments/{deployment.slug}/").content.decode()
    for action in ("promote", "rollback", "retrain", "pause", "resume", "reset-memory"):
        assert f'data-action="{action}"' in text
    assert "Save settings" in text
    assert '<dialog id="action-dialog"' in text
    assert 'name="reason"' in text
    versions = client.get(f"/deployments/{deployment.slug}/versions/").content.decode()
    assert 'id="compare-form"' in versions


def test_admins_by_role_reach_django_admin_and_others_do_not(client, deployment):
    operator = _login(Client(), "operator")
    assert '<a href="/admin/">Admin</a>' not in operator.get("/").content.decode()
    assert operator.get("/admin/adaptive/deployment/").status_code == 302  # to the admin's login
    admin = _login(client, "admin")  # in the admin group; neither staff nor superuser
    assert not admin.user.is_staff and not admin.user.is_superuser  # type: ignore[attr-defined]
    assert '<a href="/admin/">Admin</a>' in admin.get("/").content.decode()
    changelist = admin.get("/admin/adaptive/deployment/")
    assert changelist.status_code == 200
    assert deployment.slug in changelist.content.decode()
    assert admin.get(f"/admin/adaptive/deployment/{deployment.pk}/change/").status_code == 200


def test_viewer_session_cannot_act_even_with_a_csrf_token(deployment):
    client = _login(Client(enforce_csrf_checks=True), "viewer")
    page = client.get(f"/deployments/{deployment.slug}/")
    token = page.context["csrf_token"]
    response = client.post(
        f"/api/v1/deployments/{deployment.slug}/pause",
        {"reason": "forged"},
        content_type="application/json",
        headers={"X-CSRFToken": str(token)},
    )
    assert response.status_code == 403
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.ACTIVE
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.PAUSE).exists()


def test_operator_session_post_without_csrf_token_is_refused(deployment):
    client = _login(Client(enforce_csrf_checks=True), "operator")
    client.get(f"/deployments/{deployment.slug}/")
    response = client.post(
        f"/api/v1/deployments/{deployment.slug}/pause", {"reason": "cross-site"}, content_type="application/json"
    )
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.ACTIVE


def test_operator_session_with_csrf_token_acts_through_the_api(deployment):
    client = _login(Client(enforce_csrf_checks=True), "operator")
    token = client.get(f"/deployments/{deployment.slug}/").context["csrf_token"]
    response = client.post(
        f"/api/v1/deployments/{deployment.slug}/pause",
        {"reason": "maintenance"},
        content_type="application/json",
        headers={"X-CSRFToken": str(token)},
    )
    assert response.status_code == 200, response.content
    entry = AuditEntry.objects.get(action=AuditEntry.Action.PAUSE)
    assert (entry.actor_label, entry.reason) == (client.user.username, "maintenance")  # type: ignore[attr-defined]


def test_chart_js_comes_from_npm_and_the_pages_load_it_locally(client, deployment):
    # bin/setup installs it with npm ci from package-lock.json; STATICFILES_DIRS maps it.
    assert finders.find("vendor/chart.js/chart.umd.js"), "run bin/setup (npm ci) to install Chart.js"
    _login(client, "viewer")
    text = client.get(f"/deployments/{deployment.slug}/").content.decode()
    assert '/static/vendor/chart.js/chart.umd.js"' in text
    assert "cdn" not in text.lower()


def test_version_controls_only_where_there_is_a_version_to_act_on(client, db):
    _login(client, "operator")
    empty = DeploymentFactory.create(slug="empty")
    external = DeploymentFactory.create(slug="ext", serving="external", key_dim=8, feature_schema=[])
    for slug in (empty.slug, external.slug):
        text = client.get(f"/deployments/{slug}/").content.decode()
        assert 'data-action="pause"' in text and 'data-action="reset-memory"' in text
        for action in ("promote", "rollback", "retrain"):
            assert f'data-action="{action}"' not in text
    assert "Upload a first version" in client.get("/deployments/empty/").content.decode()
    assert "served by the client" in client.get("/deployments/ext/").content.decode()
