"""Predict and feedback: idempotent by id, all-or-nothing per batch, errors that name row and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from adaptive import runtime
from adaptive.models import Deployment, Event
from adaptive.services.keys import create_key
from adaptive.services.registry import upload_version
from tests.api.conftest import CLASSES_3
from tests.factories import DeploymentFactory, make_rows, model_artifacts


def _url(deployment: Deployment, action: str) -> str:
    return f"/api/v1/deployments/{deployment.slug}/{action}"


def _rows(ids: list[str], seed: int = 0) -> list[dict[str, Any]]:
    return [{"id": i, "features": f} for i, f in zip(ids, make_rows(len(ids), seed=seed), strict=True)]


def _predict(client: APIClient, deployment: Deployment, rows: list[dict[str, Any]]) -> Any:
    return client.post(_url(deployment, "predict"), {"rows": rows}, format="json")


def _feedback(client: APIClient, deployment: Deployment, labels: list[dict[str, Any]]) -> Any:
    return client.post(_url(deployment, "feedback"), {"labels": labels}, format="json")


def _labels(deployment: Deployment) -> dict[str, int | None]:
    return dict(Event.objects.filter(deployment=deployment).values_list("external_id", "label"))


def _assert_row_error(response: Any, index: int | None, field: str) -> dict[str, Any]:
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "invalid"
    assert body["field"] == field, body
    if index is None:
        assert "index" not in body
    else:
        assert body["index"] == index, body
    return body


def _key_client(deployment: Deployment) -> APIClient:
    _, raw = create_key(deployment=deployment, name="k", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    return client


# --- predict --------------------------------------------------------------------------------------


def test_predict_answers_every_row_in_request_order(ingest_client: APIClient, deployment: Deployment) -> None:
    ids = ["zulu", "alpha", "mike", "7", "bravo"]
    rows = _rows(ids)

    r = _predict(ingest_client, deployment, rows)

    assert r.status_code == 200, r.content
    predictions = r.json()["predictions"]
    assert [p["id"] for p in predictions] == ids
    # The served score is the live model's output (compensation not yet applied: score == base).
    assert deployment.live_version is not None
    expected = runtime.load_version(deployment, deployment.live_version).predict_proba(
        [row["features"] for row in rows]
    )
    for p, want in zip(predictions, expected.tolist(), strict=True):
        assert p["version"] == 1
        assert p["score"] == p["base_score"]
        assert p["score"] == pytest.approx(want, abs=1e-6)
        assert 0 < p["score"] < 1


def test_predict_stores_each_row_once_as_an_event(ingest_client: APIClient, deployment: Deployment) -> None:
    rows = _rows(["a", "b", "c"])
    rows[0]["ts"] = "2013-06-01T05:15:00Z"
    rows[1]["ts"] = "2013-06-01T07:15:00+02:00"
    rows[2]["ts"] = "2013-06-01T05:15:00"  # naive means UTC

    r = _predict(ingest_client, deployment, rows)

    assert r.status_code == 200, r.content
    events = {e.external_id: e for e in Event.objects.filter(deployment=deployment)}
    assert set(events) == {"a", "b", "c"}
    t = datetime(2013, 6, 1, 5, 15, tzinfo=UTC)
    for row, p in zip(rows, r.json()["predictions"], strict=True):
        event = events[row["id"]]
        assert event.event_time == t
        assert event.features == row["features"]
        assert event.version == deployment.live_version
        assert event.score == pytest.approx(p["score"])
        assert event.label is None


def test_rows_without_ts_get_the_receipt_time(ingest_client: APIClient, deployment: Deployment) -> None:
    before = datetime.now(UTC)

    _predict(ingest_client, deployment, _rows(["a"]))

    event = Event.objects.get(deployment=deployment)
    assert before <= event.event_time == event.received_at <= datetime.now(UTC)


def test_integer_ids_are_accepted_as_strings(ingest_client: APIClient, deployment: Deployment) -> None:
    r = _predict(ingest_client, deployment, [{"id": 42, "features": make_rows(1)[0]}])

    assert r.status_code == 200, r.content
    assert r.json()["predictions"][0]["id"] == "42"
    assert Event.objects.get(deployment=deployment).external_id == "42"


def test_repeating_a_batch_returns_the_same_predictions_and_stores_nothing_new(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    rows = _rows([f"e{i}" for i in range(20)])
    first = _predict(ingest_client, deployment, rows)

    again = _predict(ingest_client, deployment, rows)

    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert Event.objects.filter(deployment=deployment).count() == 20


def test_a_batch_mixing_old_and_new_ids_stores_only_the_new(ingest_client: APIClient, deployment: Deployment) -> None:
    first = _predict(ingest_client, deployment, _rows(["e0", "e1", "e2", "e3"]))
    old = {p["id"]: p for p in first.json()["predictions"]}
    stored_features = Event.objects.get(deployment=deployment, external_id="e2").features
    # e2 and e3 come again with other features: a retry is answered from the stored row.
    mixed = _rows(["e2", "n0", "e3", "n1"], seed=99)

    r = _predict(ingest_client, deployment, mixed)

    assert r.status_code == 200, r.content
    predictions = r.json()["predictions"]
    assert [p["id"] for p in predictions] == ["e2", "n0", "e3", "n1"]
    assert predictions[0] == old["e2"]
    assert predictions[2] == old["e3"]
    assert Event.objects.filter(deployment=deployment).count() == 6
    assert Event.objects.get(deployment=deployment, external_id="e2").features == stored_features


def test_the_same_id_in_two_deployments_is_two_events(
    operator_client: APIClient, deployment: Deployment, other_deployment: Deployment
) -> None:
    rows = _rows(["shared"])

    _predict(operator_client, deployment, rows)
    r = _predict(operator_client, other_deployment, rows)

    assert r.status_code == 200
    assert Event.objects.filter(external_id="shared").count() == 2


# --- feedback -------------------------------------------------------------------------------------


def test_feedback_reports_accepted_unknown_and_already_labeled(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    _predict(ingest_client, deployment, _rows(["e0", "e1", "e2"]))
    _feedback(ingest_client, deployment, [{"id": "e2", "label": 1}])

    r = _feedback(
        ingest_client,
        deployment,
        [{"id": "e0", "label": 1}, {"id": "ghost", "label": 0}, {"id": "e1", "label": 0}, {"id": "e2", "label": 0}],
    )

    assert r.status_code == 200, r.content
    assert r.json() == {"accepted": 2, "unknown": ["ghost"], "already_labeled": ["e2"]}
    assert _labels(deployment) == {"e0": 1, "e1": 0, "e2": 1}
    assert all(e.labeled_at is not None for e in Event.objects.filter(deployment=deployment))


def test_feedback_sent_twice_keeps_the_first_label(ingest_client: APIClient, deployment: Deployment) -> None:
    _predict(ingest_client, deployment, _rows(["e0", "e1", "e2"]))
    first = _feedback(ingest_client, deployment, [{"id": "e0", "label": 1}, {"id": "e1", "label": 0}])
    stamps = dict(Event.objects.filter(deployment=deployment).values_list("external_id", "labeled_at"))

    again = _feedback(ingest_client, deployment, [{"id": "e0", "label": 0}, {"id": "e1", "label": 1}])

    assert first.json() == {"accepted": 2, "unknown": [], "already_labeled": []}
    assert again.status_code == 200
    assert again.json() == {"accepted": 0, "unknown": [], "already_labeled": ["e0", "e1"]}
    assert _labels(deployment) == {"e0": 1, "e1": 0, "e2": None}
    assert dict(Event.objects.filter(deployment=deployment).values_list("external_id", "labeled_at")) == stamps


def test_feedback_for_an_id_of_another_deployment_is_unknown(
    operator_client: APIClient, deployment: Deployment, other_deployment: Deployment
) -> None:
    _predict(operator_client, other_deployment, _rows(["theirs"]))

    r = _feedback(operator_client, deployment, [{"id": "theirs", "label": 1}])

    assert r.json() == {"accepted": 0, "unknown": ["theirs"], "already_labeled": []}
    assert _labels(other_deployment) == {"theirs": None}


@pytest.mark.parametrize(
    ("label", "index"),
    [
        ("delayed", 1),
        ("on_time", 0),
        (True, 1),
        (False, 0),
        ("true", 1),
        ("false", 0),
        (1, 1),
        (0, 0),
        ("1", 1),
        (1.0, 1),
    ],
)
def test_binary_labels_accept_class_names_booleans_and_indexes(db: None, label: Any, index: int) -> None:
    dep = DeploymentFactory.create(classes=["on_time", "delayed"])
    weights, spec = model_artifacts()
    upload_version(deployment=dep, spec=spec, weights=weights, actor=None)
    dep.refresh_from_db()
    client = _key_client(dep)
    _predict(client, dep, _rows(["e0"]))

    r = _feedback(client, dep, [{"id": "e0", "label": label}])

    assert r.status_code == 200, r.content
    assert r.json()["accepted"] == 1
    assert _labels(dep) == {"e0": index}


def test_multiclass_labels_accept_class_names_and_indexes(
    operator_client: APIClient, multiclass_deployment: Deployment
) -> None:
    _predict(operator_client, multiclass_deployment, _rows(["a", "b", "c", "d"]))

    r = _feedback(
        operator_client,
        multiclass_deployment,
        [
            {"id": "a", "label": "cancelled"},
            {"id": "b", "label": 1},
            {"id": "c", "label": "on_time"},
            {"id": "d", "label": 2},
        ],
    )

    assert r.status_code == 200, r.content
    assert r.json()["accepted"] == 4
    assert _labels(multiclass_deployment) == {"a": CLASSES_3.index("cancelled"), "b": 1, "c": 0, "d": 2}


# --- bad input: 400 naming index and field, and nothing written -----------------------------------


def _good_features() -> dict[str, Any]:
    return {"dep_delay": 3.0, "distance": 800.0, "carrier": "UA"}


BAD_ROWS: list[tuple[str, Any, str]] = [
    ("missing feature", {"id": "bad", "features": {"dep_delay": 3.0, "carrier": "UA"}}, "distance"),
    ("unknown feature", {"id": "bad", "features": {**_good_features(), "origin": "EWR"}}, "origin"),
    ("string for a number", {"id": "bad", "features": {**_good_features(), "dep_delay": "12"}}, "dep_delay"),
    ("bool for a number", {"id": "bad", "features": {**_good_features(), "distance": True}}, "distance"),
    ("null for a number", {"id": "bad", "features": {**_good_features(), "dep_delay": None}}, "dep_delay"),
    ("number out of range", {"id": "bad", "features": {**_good_features(), "dep_delay": 1e300}}, "dep_delay"),
    ("list as category", {"id": "bad", "features": {**_good_features(), "carrier": ["UA"]}}, "carrier"),
    ("object as category", {"id": "bad", "features": {**_good_features(), "carrier": {"x": 1}}}, "carrier"),
    ("float as category", {"id": "bad", "features": {**_good_features(), "carrier": 1.5}}, "carrier"),
    ("missing id", {"features": _good_features()}, "id"),
    ("null id", {"id": None, "features": _good_features()}, "id"),
    ("empty id", {"id": "", "features": _good_features()}, "id"),
    ("id too long", {"id": "x" * 129, "features": _good_features()}, "id"),
    ("bool id", {"id": True, "features": _good_features()}, "id"),
    ("duplicate id", {"id": "r0", "features": _good_features()}, "id"),
    ("bad ts", {"id": "bad", "ts": "yesterday", "features": _good_features()}, "ts"),
    ("numeric ts", {"id": "bad", "ts": 1370063700, "features": _good_features()}, "ts"),
    ("missing features", {"id": "bad"}, "features"),
    ("features not an object", {"id": "bad", "features": [1, 2, 3]}, "features"),
    ("unknown row field", {"id": "bad", "features": _good_features(), "label": 1}, "label"),
    ("row not an object", ["bad", _good_features()], "row"),
]


@pytest.mark.parametrize(
    ("bad_row", "field"), [(row, field) for _, row, field in BAD_ROWS], ids=[n for n, _, _ in BAD_ROWS]
)
def test_a_bad_row_fails_the_whole_predict_batch(
    ingest_client: APIClient, deployment: Deployment, bad_row: Any, field: str
) -> None:
    rows = [{"id": "r0", "features": _good_features()}, {"id": "r1", "features": _good_features()}, bad_row]

    r = _predict(ingest_client, deployment, rows)

    body = _assert_row_error(r, 2, field)
    assert body["detail"].startswith(f"rows[2].{field}")
    assert not Event.objects.filter(deployment=deployment).exists()


@pytest.mark.parametrize(
    "raw_value",
    ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"],
)
def test_non_finite_numbers_are_rejected_and_nothing_is_stored(
    ingest_client: APIClient, deployment: Deployment, raw_value: str
) -> None:
    good = json.dumps({"id": "r0", "features": _good_features()})
    good1 = json.dumps({"id": "r1", "features": _good_features()})
    bad = f'{{"id": "r2", "features": {{"dep_delay": {raw_value}, "distance": 800.0, "carrier": "UA"}}}}'
    body = f'{{"rows": [{good}, {good1}, {bad}]}}'

    r = ingest_client.post(_url(deployment, "predict"), body, content_type="application/json")

    if raw_value.lstrip("-") == "Infinity":
        # Not JSON, and not a missing value either: the body is refused.
        _assert_row_error(r, None, "body")
    else:
        # NaN (a missing value where the feature is nullable) and numbers that overflow a double
        # are read, then refused by the feature's own check, which names the row and the field.
        _assert_row_error(r, 2, "dep_delay")
    assert not Event.objects.filter(deployment=deployment).exists()


BAD_LABELS: list[tuple[str, Any, str]] = [
    ("label not a class", {"id": "e2", "label": "maybe"}, "label"),
    ("label index out of range", {"id": "e2", "label": 2}, "label"),
    ("negative label", {"id": "e2", "label": -1}, "label"),
    ("fractional label", {"id": "e2", "label": 0.5}, "label"),
    ("null label", {"id": "e2", "label": None}, "label"),
    ("missing label", {"id": "e2"}, "label"),
    ("list label", {"id": "e2", "label": [1]}, "label"),
    ("missing id", {"label": 1}, "id"),
    ("duplicate id", {"id": "e0", "label": 1}, "id"),
    ("unknown field", {"id": "e2", "label": 1, "score": 0.3}, "score"),
    ("item not an object", ["e2", 1], "label"),
]


@pytest.mark.parametrize(
    ("bad_item", "field"), [(item, field) for _, item, field in BAD_LABELS], ids=[n for n, _, _ in BAD_LABELS]
)
def test_a_bad_label_fails_the_whole_feedback_batch(
    ingest_client: APIClient, deployment: Deployment, bad_item: Any, field: str
) -> None:
    _predict(ingest_client, deployment, _rows(["e0", "e1", "e2"]))

    r = _feedback(ingest_client, deployment, [{"id": "e0", "label": 1}, {"id": "e1", "label": 0}, bad_item])

    _assert_row_error(r, 2, field)
    assert _labels(deployment) == {"e0": None, "e1": None, "e2": None}


@pytest.mark.parametrize("label", [3, -1, True, "maybe", "true"])
def test_multiclass_label_outside_the_classes_is_rejected(
    operator_client: APIClient, multiclass_deployment: Deployment, label: Any
) -> None:
    _predict(operator_client, multiclass_deployment, _rows(["a", "b"]))

    r = _feedback(operator_client, multiclass_deployment, [{"id": "a", "label": 0}, {"id": "b", "label": label}])

    body = _assert_row_error(r, 1, "label")
    assert "cancelled" in body["detail"]
    assert _labels(multiclass_deployment) == {"a": None, "b": None}


@pytest.mark.parametrize("action", ["predict", "feedback"])
@pytest.mark.parametrize("body", ["{not json", "", "[1, 2", '{"rows": [}'])
def test_a_body_that_is_not_json_is_rejected(
    ingest_client: APIClient, deployment: Deployment, action: str, body: str
) -> None:
    r = ingest_client.post(_url(deployment, action), body, content_type="application/json")

    _assert_row_error(r, None, "body")


@pytest.mark.parametrize(
    ("action", "key", "payload"),
    [
        ("predict", "rows", {"rows": []}),
        ("predict", "rows", {}),
        ("predict", "rows", {"rows": {"id": "a"}}),
        ("predict", "rows", [{"id": "a"}]),
        ("feedback", "labels", {"labels": []}),
        ("feedback", "labels", {"rows": [{"id": "a", "label": 1}]}),
    ],
)
def test_an_empty_or_misshapen_batch_is_rejected(
    ingest_client: APIClient, deployment: Deployment, action: str, key: str, payload: Any
) -> None:
    r = ingest_client.post(_url(deployment, action), payload, format="json")

    _assert_row_error(r, None, key)
    assert not Event.objects.filter(deployment=deployment).exists()


def test_a_batch_over_the_row_limit_is_rejected(
    ingest_client: APIClient, deployment: Deployment, settings: Any
) -> None:
    settings.MAX_BATCH_ROWS = 3

    at_limit = _predict(ingest_client, deployment, _rows(["a", "b", "c"]))
    over = _predict(ingest_client, deployment, _rows(["d", "e", "f", "g"]))
    labels_over = _feedback(ingest_client, deployment, [{"id": i, "label": 1} for i in "abcd"])

    assert at_limit.status_code == 200
    body = _assert_row_error(over, None, "rows")
    assert "limit of 3" in body["detail"]
    _assert_row_error(labels_over, None, "labels")
    assert sorted(_labels(deployment)) == ["a", "b", "c"]
    assert set(_labels(deployment).values()) == {None}


# --- deployment state -----------------------------------------------------------------------------


def test_predict_without_a_live_version_is_a_conflict(operator_client: APIClient, empty_deployment: Deployment) -> None:
    r = _predict(operator_client, empty_deployment, _rows(["a"]))
    keyed = _predict(_key_client(empty_deployment), empty_deployment, _rows(["a"]))

    assert r.status_code == 409, r.content
    assert r.json()["error"] == "conflict"
    assert keyed.status_code == 409
    assert not Event.objects.exists()


@pytest.mark.parametrize("action", ["predict", "feedback"])
def test_unknown_deployment_is_404(operator_client: APIClient, db: None, action: str) -> None:
    payload = {"rows": _rows(["a"])} if action == "predict" else {"labels": [{"id": "a", "label": 1}]}

    r = operator_client.post(f"/api/v1/deployments/no-such-thing/{action}", payload, format="json")

    assert r.status_code == 404


@pytest.mark.parametrize("action", ["predict", "feedback"])
def test_an_id_with_a_nul_character_is_rejected(ingest_client: APIClient, deployment: Deployment, action: str) -> None:
    # Valid JSON, but PostgreSQL text cannot hold NUL: it must be a 400 on every database, not a 500.
    ingest_client.raise_request_exception = False
    payload: dict[str, Any] = (
        {"rows": [{"id": "a\u0000b", "features": _good_features()}]}
        if action == "predict"
        else {"labels": [{"id": "a\u0000b", "label": 1}]}
    )

    r = ingest_client.post(_url(deployment, action), payload, format="json")

    _assert_row_error(r, 0, "id")
    assert not Event.objects.exists()


def test_a_feature_value_with_a_nul_character_never_causes_a_server_error(
    ingest_client: APIClient, deployment: Deployment
) -> None:
    ingest_client.raise_request_exception = False
    features = {**_good_features(), "carrier": "U\u0000A"}

    r = _predict(ingest_client, deployment, [{"id": "a", "features": features}])

    assert r.status_code in (200, 400), r.content
    if r.status_code == 200:  # stored faithfully (SQLite)
        assert Event.objects.get(deployment=deployment).features == features
    else:  # refused (PostgreSQL jsonb cannot hold NUL), and nothing half-written
        assert r.json()["error"] == "invalid"
        assert not Event.objects.exists()


# --- known bugs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ts", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_ts_outside_the_datetime_range_is_rejected(ingest_client: APIClient, deployment: Deployment, ts: str) -> None:
    ingest_client.raise_request_exception = False
    rows = [{"id": "r0", "features": _good_features()}, {"id": "r1", "ts": ts, "features": _good_features()}]

    r = _predict(ingest_client, deployment, rows)

    _assert_row_error(r, 1, "ts")
    assert not Event.objects.filter(deployment=deployment).exists()
