"""An admin revokes an ingestion key from the deployment page; the key is refused over HTTP at once.

Operators see no keys and cannot revoke one, not even with a request forged from their page.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from adaptive.models import AuditEntry, IngestionKey
from adaptive.services.keys import create_key, find_active_key
from tests.e2e.conftest import Session, Users
from tests.e2e.seed import create_flights_deployment
from tests.factories import make_rows

REASON = "e2e: leaked in a gateway log"

FORGED_REVOKE = """async ({slug, id}) => {
  const token = (document.cookie.match(/(?:^|;\\s*)csrftoken=([^;]+)/) || [])[1] || '';
  const response = await fetch(`/api/v1/deployments/${slug}/keys/${id}/revoke`, {
    method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRFToken': token},
    body: JSON.stringify({reason: 'forged by an operator'}),
  });
  return {status: response.status, hadToken: token !== ''};
}"""


def _predict_status(session: Session, slug: str, raw: str, event_id: str) -> int:
    body: dict[str, Any] = {"rows": [{"id": event_id, "features": make_rows(1)[0]}]}
    response = session.context.request.post(
        f"{session.base_url}/api/v1/deployments/{slug}/predict", data=body, headers={"Authorization": f"Key {raw}"}
    )
    return response.status


def test_an_admin_revokes_a_key_from_the_deployment_page(session: Session, users: Users) -> None:
    deployment, _ = create_flights_deployment(slug="gateway", admin=users.admin)
    key, raw = create_key(deployment=deployment, name="edge-gateway", actor=users.admin)
    _, other_raw = create_key(deployment=deployment, name="batch-job", actor=users.admin)
    assert _predict_status(session, deployment.slug, raw, "before") == 200

    page = session.login("ada")
    page.goto(f"/deployments/{deployment.slug}/")
    row = page.locator(f"table#keys tr[data-key-id='{key.pk}']")
    expect(row).to_contain_text("edge-gateway")
    expect(row.locator(".key-status")).to_have_text("active")
    expect(page.locator("table#keys button[data-revoke-key]")).to_have_count(2)

    # Cancelling the confirmation sends nothing.
    row.locator("button[data-revoke-key]").click()
    dialog = page.locator("dialog#action-dialog")
    expect(dialog).to_be_visible()
    dialog.locator("button.cancel").click()
    expect(dialog).to_be_hidden()
    assert find_active_key(raw) is not None

    row.locator("button[data-revoke-key]").click()
    expect(dialog).to_be_visible()
    dialog.locator("textarea[name=reason]").fill(REASON)
    session.screenshot(page, "revoke-dialog")
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()

    expect(page.locator("#keys-result")).to_contain_text('Key "edge-gateway" revoked')
    expect(row.locator(".key-status")).to_contain_text("revoked")
    expect(row.locator("button[data-revoke-key]")).to_have_count(0)
    session.screenshot(page, "revoked")
    assert IngestionKey.objects.get(pk=key.pk).revoked_at is not None
    entry = AuditEntry.objects.get(deployment=deployment, action=AuditEntry.Action.REVOKE_KEY)
    assert (entry.actor_label, entry.reason, entry.details["key"]) == ("ada", REASON, "edge-gateway")
    # Refused over HTTP at once; the other key goes on working.
    assert _predict_status(session, deployment.slug, raw, "after") == 401
    assert _predict_status(session, deployment.slug, other_raw, "other") == 200

    page.reload()
    expect(row.locator(".key-status")).to_contain_text("revoked")
    expect(page.locator("table#keys button[data-revoke-key]")).to_have_count(1)
    session.assert_no_script_errors()


def test_an_operator_sees_no_keys_and_a_forged_revoke_is_refused(session: Session, users: Users) -> None:
    deployment, _ = create_flights_deployment(slug="gateway", admin=users.admin)
    key, raw = create_key(deployment=deployment, name="edge-gateway", actor=users.admin)

    page = session.login("olivia")
    page.goto(f"/deployments/{deployment.slug}/")
    expect(page.locator("#controls")).to_be_visible()  # an operator's page, with the operator's controls
    expect(page.locator("#ingestion-keys")).to_have_count(0)
    forged = page.evaluate(FORGED_REVOKE, {"slug": deployment.slug, "id": key.pk})

    assert forged["hadToken"] and forged["status"] == 403, forged
    assert find_active_key(raw) is not None
    assert not AuditEntry.objects.filter(action=AuditEntry.Action.REVOKE_KEY).exists()
