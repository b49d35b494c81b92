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
