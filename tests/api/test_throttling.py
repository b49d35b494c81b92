"""Throttles on the API: failed authentications per client address, and requests per ingestion key.

Time is moved forward by replacing config.ratelimit.clock (windows are keyed by the clock), never by
sleeping; the counters live in the real shared cache (files, or Redis with CACHE_URL).
"""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from adaptive.models import AuditEntry, Deployment, Event, IngestionKey
from adaptive.services.keys import create_key
from config import ratelimit
from tests.clock import Clock
from tests.factories import make_rows

BAD_TOKEN = "Token " + "0f" * 20


def _predict(client: APIClient, deployment: Deployment, ids: list[str], **extra: Any) -> Any:
    rows = [{"id": i, "features": f} for i, f in zip(ids, make_rows(len(ids)), strict=True)]
    return client.post(f"/api/v1/deployments/{deployment.slug}/predict", {"rows": rows}, format="json", **extra)


def _guess(times: int, **extra: Any) -> list[int]:
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION=BAD_TOKEN)
    return [guesser.get("/api/v1/deployments", **extra).status_code for _ in range(times)]


def _assert_throttled(response: Any) -> int:
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["error"] == "throttled", body
    assert body["detail"]
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 60
    return wait


# --- failed authentications per address ------------------------------------------------------------


def test_guessed_tokens_block_the_address_even_for_a_valid_key(
    settings: Any, clock: Clock, deployment: Deployment, ingest_client: APIClient, viewer_client: APIClient
) -> None:
    settings.AUTH_FAILURES_PER_IP = "20/min"
    clock.now += 15  # 45 s left in the window

    assert _guess(20) == [401] * 20
    assert _guess(1) == [429]

    # The right credential from the same address is refused too, and the request did nothing.
    assert _assert_throttled(_predict(ingest_client, deployment, ["a"])) == 45
    _assert_throttled(viewer_client.get("/api/v1/deployments"))
    assert not Event.objects.exists()

    # Another address is not affected.
    assert viewer_client.get("/api/v1/deployments", REMOTE_ADDR="10.0.0.7").status_code == 200

    # Once the window has passed, the valid key works again.
    clock.now += 45
    response = _predict(ingest_client, deployment, ["a"])
    assert response.status_code == 200, response.content
    assert Event.objects.filter(external_id="a").count() == 1


def test_bad_ingestion_keys_count_like_bad_tokens(settings: Any, clock: Clock, deployment: Deployment) -> None:
    settings.AUTH_FAILURES_PER_IP = "3/min"
    _, raw = create_key(deployment=deployment, name="real", actor=None)
    guesser = APIClient()
    prefix = raw.split("_")[1]
    guesses = [f"Key ik_{prefix}_wrong-{n}" for n in range(3)]

    statuses = []
    for header in guesses:
        guesser.credentials(HTTP_AUTHORIZATION=header)
        statuses.append(_predict(guesser, deployment, ["x"]).status_code)
    guesser.credentials(HTTP_AUTHORIZATION=f"Key {raw}")

    assert statuses == [401, 401, 401]
    _assert_throttled(_predict(guesser, deployment, ["x"]))
    assert not Event.objects.exists()


def test_anonymous_requests_are_not_counted(settings: Any, clock: Clock, anon_client: APIClient, db: None) -> None:
    # No credentials, nothing guessed: a dashboard whose session expired keeps getting 401, not 429.
    settings.AUTH_FAILURES_PER_IP = "3/min"

    assert [anon_client.get("/api/v1/deployments").status_code for _ in range(10)] == [401] * 10


def test_health_answers_a_blocked_address(settings: Any, clock: Clock, anon_client: APIClient, db: None) -> None:
    settings.AUTH_FAILURES_PER_IP = "2/min"
    _guess(3)

    assert anon_client.get("/api/v1/health").status_code in (200, 503)  # 503: no broker here, not a block
    assert anon_client.get("/api/v1/loop").status_code == 429


def test_forwarded_for_is_ignored_unless_behind_a_proxy(settings: Any, clock: Clock, viewer_client: APIClient) -> None:
    settings.AUTH_FAILURES_PER_IP = "3/min"
    settings.BEHIND_PROXY = False

    # A guesser cannot pick a fresh address per request with a header of its own.
    statuses = [_guess(1, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")[0] for n in range(5)]

    assert statuses == [401, 401, 401, 429, 429]
    _assert_throttled(viewer_client.get("/api/v1/deployments"))


def test_behind_a_proxy_the_address_it_appended_is_counted(
    settings: Any, clock: Clock, viewer_client: APIClient
) -> None:
    settings.AUTH_FAILURES_PER_IP = "3/min"
    settings.BEHIND_PROXY = True
    # Every request arrives from the proxy (REMOTE_ADDR 127.0.0.1); the client wrote the left entries.
    spoofed = [f"198.51.100.{n}, 203.0.113.9" for n in range(3)]

    assert [_guess(1, HTTP_X_FORWARDED_FOR=header)[0] for header in spoofed] == [401, 401, 401]
    _assert_throttled(viewer_client.get("/api/v1/deployments", HTTP_X_FORWARDED_FOR="203.0.113.9"))
    # Other clients behind the same proxy are not blocked.
    assert viewer_client.get("/api/v1/deployments", HTTP_X_FORWARDED_FOR="203.0.113.10").status_code == 200


def test_ipv6_clients_are_counted_per_64(settings: Any, clock: Clock, viewer_client: APIClient) -> None:
    settings.AUTH_FAILURES_PER_IP = "3/min"

    # One host holds a whole /64: moving through it does not reset the count.
    statuses = [_guess(1, REMOTE_ADDR=f"2001:db8:1:2::{n:x}")[0] for n in range(4)]

    assert statuses == [401, 401, 401, 429]
    _assert_throttled(viewer_client.get("/api/v1/deployments", REMOTE_ADDR="2001:db8:1:2:ffff::1"))
    assert viewer_client.get("/api/v1/deployments", REMOTE_ADDR="2001:db8:1:3::1").status_code == 200


# --- rates per ingestion key -----------------------------------------------------------------------


def _client_with_key(deployment: Deployment, **fields: Any) -> tuple[APIClient, IngestionKey]:
    key, raw = create_key(deployment=deployment, name=f"k{IngestionKey.objects.count()}", actor=None, **fields)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    return client, key


def test_a_key_over_its_rate_gets_429_until_the_window_passes(clock: Clock, deployment: Deployment) -> None:
    limited, _ = _client_with_key(deployment, rate="3/10s")
    other, _ = _client_with_key(deployment)
    clock.now += 4

    statuses = [_predict(limited, deployment, [f"r{n}"]).status_code for n in range(3)]
    throttled = _predict(limited, deployment, ["r3"])
    feedback = limited.post(
        f"/api/v1/deployments/{deployment.slug}/feedback", {"labels": [{"id": "r0", "label": 1}]}, format="json"
    )

    assert statuses == [200, 200, 200]
    assert _assert_throttled(throttled) == 6
    _assert_throttled(feedback)
    assert set(Event.objects.values_list("external_id", flat=True)) == {"r0", "r1", "r2"}
    assert Event.objects.get(external_id="r0").label is None
    # Another key of the same deployment has its own count (and no rate: unlimited).
    assert all(_predict(other, deployment, [f"o{n}"]).status_code == 200 for n in range(5))

    clock.now += 6
    assert _predict(limited, deployment, ["r3"]).status_code == 200


def test_the_default_rate_applies_to_keys_without_their_own(
    settings: Any, clock: Clock, deployment: Deployment
) -> None:
    settings.INGESTION_KEY_RATE = "2/min"
    default, _ = _client_with_key(deployment)
    own, _ = _client_with_key(deployment, rate="5/min")

    assert [_predict(default, deployment, [f"d{n}"]).status_code for n in range(3)] == [200, 200, 429]
    assert [_predict(own, deployment, [f"o{n}"]).status_code for n in range(6)] == [200] * 5 + [429]


def test_an_unlimited_key_writes_no_counter(clock: Clock, deployment: Deployment) -> None:
    client, key = _client_with_key(deployment)

    assert _predict(client, deployment, ["u"]).status_code == 200
    window = ratelimit.FixedWindow(f"ingest:key:{key.pk}", ratelimit.Rate(1, 60))
    assert window.count() == 0


def test_users_are_not_throttled_by_the_key_rate(
    settings: Any, clock: Clock, deployment: Deployment, operator_client: APIClient
) -> None:
    settings.INGESTION_KEY_RATE = "1/min"

    assert [_predict(operator_client, deployment, [f"u{n}"]).status_code for n in range(3)] == [200] * 3


def test_an_admin_creates_a_key_with_a_rate(admin_client: APIClient, deployment: Deployment) -> None:
    url = f"/api/v1/deployments/{deployment.slug}/keys"

    created = admin_client.post(url, {"name": "partner", "rate": "100/min"}, format="json")

    assert created.status_code == 201, created.content
    assert created.json()["rate"] == "100/min"
    assert IngestionKey.objects.get(name="partner").rate == "100/min"
    assert admin_client.get(url).json()[0]["rate"] == "100/min"
    assert AuditEntry.objects.get(action=AuditEntry.Action.CREATE_KEY).details["rate"] == "100/min"


@pytest.mark.parametrize("rate", ["fast", "0/min", "10/ms", "5/2day", "1" * 40 + "/min"])
def test_a_bad_rate_is_a_400_and_no_key(admin_client: APIClient, deployment: Deployment, rate: str) -> None:
    response = admin_client.post(
        f"/api/v1/deployments/{deployment.slug}/keys", {"name": "partner", "rate": rate}, format="json"
    )

    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["error"], body["field"]) == ("invalid", "rate")
    assert not IngestionKey.objects.exists()
