"""Every model has a working admin page: changelist, search and filters render for a superuser."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from adaptive import models as m

ALL_MODELS = [
    m.Deployment,
    m.ModelVersion,
    m.Release,
    m.Event,
    m.ErrorSample,
    m.Window,
    m.DriftMetric,
    m.Job,
    m.FlipReport,
    m.AuditEntry,
    m.IngestionKey,
    m.ApiToken,
]


def test_every_domain_model_is_registered_in_admin():
    assert [model for model in ALL_MODELS if not admin.site.is_registered(model)] == []


@pytest.mark.django_db
@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda model: model.__name__)
def test_admin_changelist_renders_with_data(client, deployment, model):
    user = get_user_model().objects.create_superuser("root-admin", password="pw-for-tests-123")
    client.force_login(user)
    url = reverse(f"admin:adaptive_{model._meta.model_name}_changelist")
    response = client.get(url)
    assert response.status_code == 200
    if admin.site.get_model_admin(model).search_fields:
        assert client.get(url, {"q": "x"}).status_code == 200


@pytest.mark.django_db
def test_audit_log_is_read_only_in_admin(client, deployment):
    user = get_user_model().objects.create_superuser("root-admin", password="pw-for-tests-123")
    client.force_login(user)
    entry = m.AuditEntry.objects.filter(deployment=deployment).first()
    assert entry is not None
    response = client.post(reverse("admin:adaptive_auditentry_delete", args=[entry.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert m.AuditEntry.objects.filter(pk=entry.pk).exists()


@pytest.mark.django_db
def test_revoking_tokens_in_the_admin_goes_through_the_audited_service(client):
    from rest_framework.test import APIClient

    from adaptive.services.tokens import create_token

    owner = get_user_model().objects.create_user("token-owner", password="pw-for-tests-123")
    token, raw = create_token(user=owner, name="laptop", actor=owner)
    root = get_user_model().objects.create_superuser("root-admin", password="pw-for-tests-123")
    client.force_login(root)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert api.get("/api/v1/tokens").status_code == 200

    url = reverse("admin:adaptive_apitoken_changelist")
    response = client.post(url, {"action": "revoke", "_selected_action": [token.pk]})

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert m.AuditEntry.objects.filter(action=m.AuditEntry.Action.REVOKE_TOKEN, actor_label="root-admin").count() == 1
    assert api.get("/api/v1/tokens").status_code == 401


def _change_form_data(deployment: m.Deployment, **changes: object) -> dict[str, object]:
    """The admin change form's fields as the page would post them, with ``changes`` applied."""
    import json

    from adaptive.admin import DeploymentForm

    form = DeploymentForm(instance=deployment)
    data: dict[str, object] = {}
    for name in form.fields:
        value = form[name].value()
        if isinstance(value, list | dict):
            value = json.dumps(value)
        if value is None:
            value = ""
        if isinstance(value, bool):
            if not value:
                continue  # an unchecked box is not posted
            value = "on"
        data[name] = value
    data.update(changes)
    return data


def test_settings_edited_in_the_admin_are_audited_like_the_apis(client, deployment):
    root = get_user_model().objects.create_superuser("root-admin", password="pw-for-tests-123")
    client.force_login(root)
    url = reverse("admin:adaptive_deployment_change", args=[deployment.pk])

    response = client.post(url, _change_form_data(deployment, compensation_lambda="0.25", name="Renamed"))

    assert response.status_code == 302, response.content.decode()[:2000]
    deployment.refresh_from_db()
    assert deployment.compensation_lambda == 0.25 and deployment.name == "Renamed"
    entry = m.AuditEntry.objects.get(action=m.AuditEntry.Action.UPDATE_SETTINGS)
    assert entry.actor_label == "root-admin"
    assert entry.details["changes"] == {"compensation_lambda": {"from": 0.7, "to": 0.25}}


def test_the_admin_refuses_settings_outside_the_apis_bounds(client, deployment):
    root = get_user_model().objects.create_superuser("root-admin", password="pw-for-tests-123")
    client.force_login(root)
    url = reverse("admin:adaptive_deployment_change", args=[deployment.pk])

    response = client.post(url, _change_form_data(deployment, compensation_gamma="1.5"))

    assert response.status_code == 200  # the form again, with the error
    assert "must be in [0, 1]" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.compensation_gamma != 1.5
    assert not m.AuditEntry.objects.filter(action=m.AuditEntry.Action.UPDATE_SETTINGS).exists()
