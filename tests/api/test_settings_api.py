"""PATCH /api/v1/deployments/{slug}: operators change adaptation settings, audited, validated."""

from __future__ import annotations

import pytest
from django.contrib import admin
from rest_framework.test import APIClient

from adaptive.models import AuditEntry, Deployment
from adaptive.services.deployments import SETTINGS
from api.serializers import DeploymentSettingsSerializer
from dashboard.forms import SettingsForm
from tests.factories import make_rows

pytestmark = pytest.mark.django_db


def _patch(client: APIClient, dep: Deployment, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    r = client.patch(f"/api/v1/deployments/{dep.slug}", body, format="json")
    return r.status_code, r.json()


def test_an_operator_switches_compensation_off_with_a_reason_and_it_is_audited(
    operator_client: APIClient, deployment: Deployment
) -> None:
    code, body = _patch(operator_client, deployment, {"compensation_enabled": False, "reason": "A/B test"})

    assert code == 200 and body["compensation_enabled"] is False
    entry = AuditEntry.objects.get(action=AuditEntry.Action.UPDATE_SETTINGS)
    assert entry.reason == "A/B test" and entry.actor == operator_client.user
    assert entry.details == {"changes": {"compensation_enabled": {"from": True, "to": False}}}


def test_repeating_the_same_change_writes_no_second_audit_entry(
    operator_client: APIClient, deployment: Deployment
) -> None:
    _patch(operator_client, deployment, {"memory_k": 50})
    code, body = _patch(operator_client, deployment, {"memory_k": 50})

    assert code == 200 and body["memory_k"] == 50
    assert AuditEntry.objects.filter(action=AuditEntry.Action.UPDATE_SETTINGS).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"compensation_lambda": 1.5}, "compensation_lambda"),
        ({"memory_kind": "magic"}, "memory_kind"),
        ({"slug": "renamed"}, "slug"),
        ({"memory_revision": 99}, "memory_revision"),
        ({"window_events": 0}, "window_events"),
    ],
)
def test_bad_or_read_only_fields_are_a_400_naming_the_field(
    operator_client: APIClient, deployment: Deployment, body: dict[str, object], field: str
) -> None:
    code, out = _patch(operator_client, deployment, body)

    assert code == 400 and out["field"] == field
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.UPDATE_SETTINGS).exists()


def test_viewers_and_ingestion_keys_cannot_change_settings(
    viewer_client: APIClient, ingest_client: APIClient, deployment: Deployment
) -> None:
    assert _patch(viewer_client, deployment, {"memory_k": 5})[0] == 403
    assert _patch(ingest_client, deployment, {"memory_k": 5})[0] == 403
    assert Deployment.objects.get(pk=deployment.pk).memory_k == 100


def test_switching_the_memory_kind_keeps_serving(operator_client: APIClient, deployment: Deployment) -> None:
    rows = [{"id": f"r{i}", "features": f} for i, f in enumerate(make_rows(5))]
    url = f"/api/v1/deployments/{deployment.slug}/predict"
    assert operator_client.post(url, {"rows": rows}, format="json").status_code == 200

    assert _patch(operator_client, deployment, {"memory_kind": "sketch"})[0] == 200
    rows = [{"id": f"s{i}", "features": f} for i, f in enumerate(make_rows(5))]
    r = operator_client.post(url, {"rows": rows}, format="json")

    assert r.status_code == 200 and len(r.json()["predictions"]) == 5


def test_the_api_the_dashboard_form_and_the_admin_offer_the_same_settings() -> None:
    # The editable settings are defined once, in the domain; every entry point derives its list.
    fieldsets = admin.site._registry[Deployment].fieldsets
    assert fieldsets is not None
    in_admin = [name for _, options in fieldsets for name in options["fields"] if name in SETTINGS]

    assert set(DeploymentSettingsSerializer().fields) - {"reason"} == set(SETTINGS)
    assert list(SettingsForm().fields) == list(SETTINGS)
    assert in_admin == list(SETTINGS)
