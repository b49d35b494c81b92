"""The operator's controls over REST: promote, rollback, pause/resume, reset memory, retrain, compare,
jobs and their cancellation; the release timeline, "what was live at T" and flip reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from adaptive.models import AuditEntry, Deployment, ErrorSample, FlipReport, Job, ModelVersion, Release
from adaptive.services import ingest, jobs, memory, releases
from adaptive.services.keys import create_key
from adaptive.services.registry import upload_version
from tests.factories import DeploymentFactory, UserFactory, make_rows, model_artifacts


@pytest.fixture
def two_versions(deployment: Deployment) -> Deployment:
    """The deployment fixture (v1 live) with a second version, v2, as a candidate."""
    weights, spec = model_artifacts(seed=7)
    upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    deployment.refresh_from_db()
    return deployment


def _url(deployment: Deployment, action: str) -> str:
    return f"/api/v1/deployments/{deployment.slug}/{action}"


def _post(client: APIClient, deployment: Deployment, action: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(_url(deployment, action), body or {}, format="json")


def _live_number(deployment: Deployment) -> int | None:
    return Deployment.objects.filter(pk=deployment.pk).values_list("live_version__number", flat=True).get()


def _audit(deployment: Deployment, action: str) -> list[AuditEntry]:
    """The deployment's audit entries of ``action``, leaving out the first upload's own promotion."""
    entries = AuditEntry.objects.filter(deployment=deployment, action=action).exclude(
        reason="first version of the deployment goes live"
    )
    return list(entries.order_by("created_at"))


# --- promote ---------------------------------------------------------------------------------------


def test_promote_puts_the_version_live_and_answers_the_release(
    operator_client: APIClient, two_versions: Deployment
) -> None:
    r = _post(operator_client, two_versions, "promote", {"version": 2, "reason": "better AUC"})

    assert r.status_code == 200, r.content
    body = r.json()
    username = operator_client.user.username
    release = body["release"]
    assert (release["version"], release["kind"], release["actor"], release["reason"]) == (
        2,
        "promotion",
        username,
        "better AUC",
    )
    assert release["ended_at"] is None and release["started_at"]
    assert body["live_version"] == {"number": 2, "status": "live"}
    assert isinstance(body["took_ms"], float) and body["took_ms"] >= 0
    assert _live_number(two_versions) == 2
    (entry,) = _audit(two_versions, AuditEntry.Action.PROMOTE)
    assert (entry.actor_label, entry.reason, entry.to_version.number) == (username, "better AUC", 2)  # type: ignore[union-attr]


def test_promoting_twice_makes_one_release(operator_client: APIClient, two_versions: Deployment) -> None:
    first = _post(operator_client, two_versions, "promote", {"version": 2, "reason": "go"})
    again = _post(operator_client, two_versions, "promote", {"version": 2, "reason": "retry after a timeout"})

    assert first.status_code == again.status_code == 200, again.content
    assert again.json()["release"] == first.json()["release"]
    assert Release.objects.filter(deployment=two_versions).count() == 2  # initial + one promotion
    assert len(_audit(two_versions, AuditEntry.Action.PROMOTE)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 2}, "reason"),
        ({"version": 2, "reason": ""}, "reason"),
        ({"version": 2, "reason": "   "}, "reason"),
        ({"reason": "go"}, "version"),
        ({"version": "two", "reason": "go"}, "version"),
        ({"version": 0, "reason": "go"}, "version"),
        ({"version": 9, "reason": "go"}, "version"),  # no such version: the service says so
    ],
)
def test_a_bad_promotion_is_400_naming_the_field_and_changes_nothing(
    operator_client: APIClient, two_versions: Deployment, body: dict[str, Any], field: str
) -> None:
    r = _post(operator_client, two_versions, "promote", body)

    assert r.status_code == 400, r.content
    assert (r.json()["error"], r.json()["field"]) == ("invalid", field)
    assert _live_number(two_versions) == 1
    assert Release.objects.filter(deployment=two_versions).count() == 1
    assert not _audit(two_versions, AuditEntry.Action.PROMOTE)


def test_an_unknown_deployment_is_404(operator_client: APIClient, db: None) -> None:
    r = operator_client.post("/api/v1/deployments/nope/promote", {"version": 1, "reason": "x"}, format="json")

    assert r.status_code == 404
    assert r.json() == {"error": "not_found", "detail": "no deployment 'nope'", "request_id": r["X-Request-ID"]}


def test_a_promotion_warms_the_versions_memory_before_answering_and_queues_nothing(
    operator_client: APIClient, two_versions: Deployment, django_capture_on_commit_callbacks: Any
) -> None:
    rows = [{"id": f"r{i}", "features": f} for i, f in enumerate(make_rows(40, seed=4))]
    ingest.predict(deployment=Deployment.objects.get(pk=two_versions.pk), payload={"rows": rows})
    ingest.record_feedback(deployment=two_versions, payload={"labels": [{"id": r["id"], "label": 1} for r in rows]})
    v2 = ModelVersion.objects.get(deployment=two_versions, number=2)

    with django_capture_on_commit_callbacks() as sent:
        first = _post(operator_client, two_versions, "promote", {"version": 2, "reason": "go"})
    warmed_at = Deployment.objects.get(pk=two_versions.pk).memory_revision
    retried = _post(operator_client, two_versions, "promote", {"version": 2, "reason": "go"})

    assert first.status_code == retried.status_code == 200
    assert not sent  # no warm-up task after the commit: the memory was warmed before the switch
    assert ErrorSample.objects.filter(version=v2, active=True).count() == 40
    assert first.json()["release"]["memory_revision"] == warmed_at  # the release starts with it
    assert retried.json()["release"]["id"] == first.json()["release"]["id"]
    assert Deployment.objects.get(pk=two_versions.pk).memory_revision == warmed_at  # the retry wrote nothing


# --- rollback --------------------------------------------------------------------------------------


def test_rollback_puts_the_previous_release_back(operator_client: APIClient, two_versions: Deployment) -> None:
    releases.promote(deployment=two_versions, number=2, actor=None, reason="try v2")

    r = _post(operator_client, two_versions, "rollback", {"reason": "v2 misbehaves"})

    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["release"]["version"], body["release"]["kind"], body["release"]["reason"]) == (
        1,
        "rollback",
        "v2 misbehaves",
    )
    assert body["live_version"] == {"number": 1, "status": "live"}
    assert body["took_ms"] >= 0
    assert _live_number(two_versions) == 1
    (entry,) = _audit(two_versions, AuditEntry.Action.ROLLBACK)
    assert (entry.from_version.number, entry.to_version.number) == (2, 1)  # type: ignore[union-attr]


def test_rolling_back_twice_to_an_explicit_version_is_a_409_the_second_time(
    operator_client: APIClient, two_versions: Deployment
) -> None:
    releases.promote(deployment=two_versions, number=2, actor=None, reason="try v2")

    first = _post(operator_client, two_versions, "rollback", {"version": 1, "reason": "back"})
    again = _post(operator_client, two_versions, "rollback", {"version": 1, "reason": "back (retry)"})

    assert first.status_code == 200, first.content
    assert again.status_code == 409, again.content
    assert again.json() == {
        "error": "conflict",
        "detail": "version 1 is already live",
        "request_id": again["X-Request-ID"],
    }
    assert Release.objects.filter(deployment=two_versions).count() == 3
    assert _live_number(two_versions) == 1


def test_rollback_without_an_earlier_release_is_a_409(operator_client: APIClient, two_versions: Deployment) -> None:
    r = _post(operator_client, two_versions, "rollback", {"reason": "panic"})

    assert r.status_code == 409
    assert "no earlier release" in r.json()["detail"]
    assert Release.objects.filter(deployment=two_versions).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": ""}, "reason"),
        ({"version": "x", "reason": "r"}, "version"),
        ({"version": 7, "reason": "r"}, "version"),
    ],
)
def test_a_bad_rollback_is_400(
    operator_client: APIClient, two_versions: Deployment, body: dict[str, Any], field: str
) -> None:
    releases.promote(deployment=two_versions, number=2, actor=None, reason="try v2")

    r = _post(operator_client, two_versions, "rollback", body)

    assert r.status_code == 400, r.content
    assert r.json()["field"] == field
    assert _live_number(two_versions) == 2


def _learn(deployment: Deployment, prefix: str, n: int, label: int) -> None:
    """Serve n rows with the live version and label them all ``label``: its memory learns them."""
    dep = Deployment.objects.select_related("live_version").get(pk=deployment.pk)
    rows = [{"id": f"{prefix}-{i}", "features": f} for i, f in enumerate(make_rows(n, seed=n))]
    served = ingest.predict(deployment=dep, payload={"rows": rows})
    ingest.record_feedback(deployment=dep, payload={"labels": [{"id": p.id, "label": label} for p in served]})
    memory.apply_pending(dep.pk)


def _predict(client: APIClient, deployment: Deployment, rows: list[dict[str, Any]], prefix: str) -> list[Any]:
    body = {"rows": [{"id": f"{prefix}-{i}", "features": f} for i, f in enumerate(rows)]}
    r = client.post(_url(deployment, "predict"), body, format="json")
    assert r.status_code == 200, r.content
    predictions: list[Any] = r.json()["predictions"]
    return predictions


def test_rollback_restores_the_predictions_of_before_the_promotion(
    operator_client: APIClient, two_versions: Deployment
) -> None:
    _learn(two_versions, "v1", 200, 1)  # v1's memory: everything was positive
    probe = make_rows(20, seed=99)
    before = _predict(operator_client, two_versions, probe, "before")
    assert any(p["score"] != p["base_score"] for p in before)  # the memory is in the scores

    assert _post(operator_client, two_versions, "promote", {"version": 2, "reason": "try"}).status_code == 200
    _learn(two_versions, "v2", 150, 0)  # v2 learns the opposite, in its own memory
    during = _predict(operator_client, two_versions, probe, "during")
    assert {p["version"] for p in during} == {2}
    assert [p["score"] for p in during] != pytest.approx([p["score"] for p in before])

    assert _post(operator_client, two_versions, "rollback", {"reason": "v2 is worse"}).status_code == 200
    after = _predict(operator_client, two_versions, probe, "after")

    assert {p["version"] for p in after} == {1}
    assert [p["score"] for p in after] == pytest.approx([p["score"] for p in before], abs=1e-9)
    assert [p["base_score"] for p in after] == pytest.approx([p["base_score"] for p in before], abs=1e-9)


# --- pause, resume, reset memory -------------------------------------------------------------------


def test_pause_and_resume_switch_the_status_once(operator_client: APIClient, deployment: Deployment) -> None:
    paused = _post(operator_client, deployment, "pause", {"reason": "label incident"})
    paused_again = _post(operator_client, deployment, "pause", {"reason": "label incident (retry)"})

    assert paused.status_code == paused_again.status_code == 200, paused.content
    body = paused.json()
    assert (body["deployment"], body["status"], body["live_version"]) == (deployment.slug, "paused", 1)
    assert body["took_ms"] >= 0
    assert [e.reason for e in _audit(deployment, AuditEntry.Action.PAUSE)] == ["label incident"]

    resumed = _post(operator_client, deployment, "resume")  # the reason is optional here

    assert resumed.status_code == 200, resumed.content
    assert resumed.json()["status"] == "active"
    assert Deployment.objects.get(pk=deployment.pk).status == Deployment.Status.ACTIVE
    assert len(_audit(deployment, AuditEntry.Action.RESUME)) == 1


@pytest.mark.parametrize("action", ["pause", "reset-memory"])
@pytest.mark.parametrize("body", [{}, {"reason": ""}, {"reason": " \n"}])
def test_pause_and_reset_need_a_reason(
    operator_client: APIClient, deployment: Deployment, action: str, body: dict[str, Any]
) -> None:
    r = _post(operator_client, deployment, action, body)

    assert r.status_code == 400, r.content
    assert r.json()["field"] == "reason"
    assert Deployment.objects.get(pk=deployment.pk).status == Deployment.Status.ACTIVE
    assert not AuditEntry.objects.filter(action__in=["pause", "reset_memory"]).exists()


def test_pausing_an_archived_deployment_is_a_409(operator_client: APIClient, deployment: Deployment) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(status=Deployment.Status.ARCHIVED)

    r = _post(operator_client, deployment, "pause", {"reason": "x"})

    assert r.status_code == 409
    assert r.json()["detail"] == "the deployment is archived"


def test_reset_memory_clears_the_live_memory(operator_client: APIClient, deployment: Deployment) -> None:
    _learn(deployment, "r", 40, 1)
    revision = Deployment.objects.get(pk=deployment.pk).memory_revision

    r = _post(operator_client, deployment, "reset-memory", {"reason": "mislabeled batch"})
    again = _post(operator_client, deployment, "reset-memory", {"reason": "mislabeled batch"})

    assert r.status_code == 200, r.content
    assert (r.json()["cleared"], r.json()["memory_revision"]) == (40, revision + 1)
    assert again.json()["cleared"] == 0
    probe = _predict(operator_client, deployment, make_rows(5, seed=3), "probe")
    assert [p["score"] for p in probe] == [p["base_score"] for p in probe]
    assert _audit(deployment, AuditEntry.Action.RESET_MEMORY)[0].reason == "mislabeled batch"


# --- retrain and compare ---------------------------------------------------------------------------


def test_comparing_a_version_with_itself_is_400(operator_client: APIClient, two_versions: Deployment) -> None:
    r = _post(operator_client, two_versions, "compare", {"old": 1, "new": 1})

    assert r.status_code == 400
    assert r.json()["field"] == "new"


def test_retrain_queues_one_job(operator_client: APIClient, deployment: Deployment) -> None:
    r = _post(operator_client, deployment, "retrain", {"reason": "compensated error drifts", "params": {"epochs": 2}})
    again = _post(operator_client, deployment, "retrain", {"reason": "retry"})

    assert r.status_code == 202, r.content
    job = r.json()
    assert (job["kind"], job["status"], job["deployment"]) == ("retrain", "queued", deployment.slug)
    assert job["params"]["epochs"] == 2
    assert job["requested_by"] == operator_client.user.username
    assert again.status_code == 409  # one retrain at a time
    assert Job.objects.filter(kind=Job.Kind.RETRAIN).count() == 1


def test_retrain_with_a_bad_parameter_is_400(operator_client: APIClient, deployment: Deployment) -> None:
    r = _post(operator_client, deployment, "retrain", {"reason": "x", "params": {"epochs": 0}})

    assert r.status_code == 400
    assert r.json()["field"] == "params.epochs"
    assert not Job.objects.exists()


def test_compare_queues_an_evaluation_job(operator_client: APIClient, two_versions: Deployment) -> None:
    r = _post(operator_client, two_versions, "compare", {"old": 1, "new": 2})

    assert r.status_code == 202, r.content
    assert (r.json()["kind"], r.json()["status"]) == ("evaluation", "queued")


# --- what was live when ----------------------------------------------------------------------------


def test_live_at_answers_for_a_time_before_and_after_a_promotion(
    viewer_client: APIClient, two_versions: Deployment
) -> None:
    releases.promote(deployment=two_versions, number=2, actor=None, reason="go")
    initial, promotion = Release.objects.filter(deployment=two_versions).order_by("started_at")
    url = _url(two_versions, "live")

    before = viewer_client.get(url, {"at": (promotion.started_at - timedelta(microseconds=1)).isoformat()})
    at_switch = viewer_client.get(url, {"at": promotion.started_at.isoformat()})
    now = viewer_client.get(url)

    assert before.status_code == at_switch.status_code == now.status_code == 200, before.content
    assert before.json()["release"]["id"] == initial.pk
    assert before.json()["release"]["version"] == 1
    assert before.json()["release"]["memory_revision"] == initial.memory_revision
    assert before.json()["release"]["ended_at"] is not None
    assert (at_switch.json()["release"]["version"], at_switch.json()["release"]["kind"]) == (2, "promotion")
    assert now.json()["release"]["id"] == promotion.pk


def test_live_at_before_the_first_release_is_404_saying_so(viewer_client: APIClient, deployment: Deployment) -> None:
    first = Release.objects.get(deployment=deployment)

    r = viewer_client.get(_url(deployment, "live"), {"at": "2001-01-01T00:00:00Z"})

    assert r.status_code == 404
    detail = r.json()["detail"]
    assert "nothing" in detail and "was live at 2001-01-01T00:00:00+00:00" in detail
    assert first.started_at.isoformat() in detail


def test_live_at_a_deployment_without_releases_is_404(viewer_client: APIClient, db: None) -> None:
    empty = DeploymentFactory.create()

    r = viewer_client.get(_url(empty, "live"))

    assert r.status_code == 404
    assert "was live" in r.json()["detail"]


@pytest.mark.parametrize("at", ["yesterday", "2024-13-01T00:00:00Z", "1700000000"])
def test_live_at_a_bad_timestamp_is_400(viewer_client: APIClient, deployment: Deployment, at: str) -> None:
    r = viewer_client.get(_url(deployment, "live"), {"at": at})

    assert r.status_code == 400
    assert r.json()["field"] == "at"


def test_the_release_timeline_is_newest_first_filtered_and_paginated(
    viewer_client: APIClient, two_versions: Deployment
) -> None:
    releases.promote(deployment=two_versions, number=2, actor=None, reason="go")
    releases.rollback(deployment=two_versions, actor=None, reason="back")
    rows = list(Release.objects.filter(deployment=two_versions).order_by("started_at"))
    url = _url(two_versions, "releases")

    full = viewer_client.get(url).json()
    since = viewer_client.get(url, {"since": rows[1].started_at.isoformat()}).json()
    until = viewer_client.get(url, {"until": rows[1].started_at.isoformat()}).json()
    page = viewer_client.get(url, {"limit": 1, "offset": 1}).json()

    assert [r["kind"] for r in full["results"]] == ["rollback", "promotion", "initial"]
    assert [r["version"] for r in full["results"]] == [1, 2, 1]
    assert full["results"][0]["reason"] == "back" and full["results"][0]["actor"] == "system"
    assert [r["id"] for r in since["results"]] == [rows[2].pk, rows[1].pk]
    assert [r["id"] for r in until["results"]] == [rows[0].pk]
    assert (page["count"], [r["id"] for r in page["results"]]) == (3, [rows[1].pk])
    assert page["next"] and page["previous"]


def test_a_bad_timeline_filter_is_400(viewer_client: APIClient, deployment: Deployment) -> None:
    r = viewer_client.get(_url(deployment, "releases"), {"since": "soon"})

    assert r.status_code == 400
    assert r.json()["field"] == "since"


# --- flip reports ----------------------------------------------------------------------------------


def _flip_report(deployment: Deployment, old: int, new: int, **fields: Any) -> FlipReport:
    versions = {v.number: v for v in ModelVersion.objects.filter(deployment=deployment)}
    values: dict[str, Any] = {
        "n": 1000,
        "old_accuracy": 0.80,
        "new_accuracy": 0.82,
        "old_auc": 0.85,
        "new_auc": 0.87,
        "nfr": 0.03,
        "nfr_low": 0.02,
        "nfr_high": 0.042,
        "pfr": 0.05,
        "pfr_low": 0.038,
        "pfr_high": 0.064,
        "nfi": 0.17,
        "relative_nfr": 0.83,
        "nfr_mc": None,
        "disagreement": 0.08,
        "mcnemar_p": 0.012,
        "per_class": [{"class": "1", "n": 400, "nfr": 0.04}],
        "example_event_ids": ["ev-1", "ev-9"],
        "gate_passed": True,
        "gate_reasons": ["accuracy +0.020 >= 0.000"],
        **fields,
    }
    return FlipReport.objects.create(
        deployment=deployment, old_version=versions[old], new_version=versions[new], **values
    )


def test_flip_reports_list_newest_first_and_filter_by_new_version(
    viewer_client: APIClient, two_versions: Deployment
) -> None:
    weights, spec = model_artifacts(seed=8)
    upload_version(deployment=two_versions, spec=spec, weights=weights, actor=None)
    first = _flip_report(two_versions, 1, 2, gate_passed=False)
    second = _flip_report(two_versions, 1, 3)
    url = _url(two_versions, "flip-reports")

    listed = viewer_client.get(url).json()
    only_v2 = viewer_client.get(url, {"new": 2}).json()

    assert [r["id"] for r in listed["results"]] == [second.pk, first.pk]
    row = only_v2["results"][0]
    assert [r["id"] for r in only_v2["results"]] == [first.pk]
    assert (row["old_version"], row["new_version"], row["n"], row["gate_passed"]) == (1, 2, 1000, False)
    assert "per_class" not in row  # the list carries headline figures only
    assert viewer_client.get(url, {"new": "two"}).status_code == 400


def test_a_flip_report_detail_has_every_field(viewer_client: APIClient, two_versions: Deployment) -> None:
    report = _flip_report(two_versions, 1, 2)

    r = viewer_client.get(_url(two_versions, f"flip-reports/{report.pk}"))

    assert r.status_code == 200, r.content
    body = r.json()
    model_fields = {f.name for f in FlipReport._meta.get_fields()} - {"id", "deployment", "old_version", "new_version"}
    assert model_fields | {"id", "old_version", "new_version"} == set(body)
    assert (body["old_version"], body["new_version"], body["nfr_high"]) == (1, 2, 0.042)
    assert body["per_class"] == [{"class": "1", "n": 400, "nfr": 0.04}]
    assert body["example_event_ids"] == ["ev-1", "ev-9"]


def test_a_flip_report_of_another_deployment_is_404(
    viewer_client: APIClient, two_versions: Deployment, other_deployment: Deployment
) -> None:
    report = _flip_report(two_versions, 1, 2)

    assert viewer_client.get(_url(other_deployment, f"flip-reports/{report.pk}")).status_code == 404
    assert viewer_client.get(_url(two_versions, "flip-reports/999999")).status_code == 404


# --- jobs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSet:
    retrain: Job
    evaluation: Job
    compensation: Job
    other: Job
    ping: Job


@pytest.fixture
def job_set(deployment: Deployment, other_deployment: Deployment) -> JobSet:
    """Jobs created oldest first: a ping, another deployment's retrain, then this one's jobs."""
    user = UserFactory.create(role="operator")
    ping = Job.objects.create(kind=Job.Kind.PING, status=Job.Status.SUCCEEDED)
    other = Job.objects.create(deployment=other_deployment, kind=Job.Kind.RETRAIN, status=Job.Status.RUNNING)
    compensation = Job.objects.create(deployment=deployment, kind=Job.Kind.COMPENSATION, status=Job.Status.SUCCEEDED)
    evaluation = Job.objects.create(deployment=deployment, kind=Job.Kind.EVALUATION, status=Job.Status.FAILED)
    retrain = Job.objects.create(
        deployment=deployment, kind=Job.Kind.RETRAIN, status=Job.Status.QUEUED, params={"epochs": 3}, requested_by=user
    )
    return JobSet(retrain, evaluation, compensation, other, ping)


def _job_ids(client: APIClient, **params: Any) -> list[int]:
    r = client.get("/api/v1/jobs", params)
    assert r.status_code == 200, r.content
    return [j["id"] for j in r.json()["results"]]


def test_jobs_list_newest_first_with_filters(viewer_client: APIClient, deployment: Deployment, job_set: JobSet) -> None:
    j = job_set

    assert _job_ids(viewer_client) == [j.retrain.pk, j.evaluation.pk, j.compensation.pk, j.other.pk, j.ping.pk]
    assert _job_ids(viewer_client, deployment=deployment.slug) == [j.retrain.pk, j.evaluation.pk, j.compensation.pk]
    assert _job_ids(viewer_client, kind="retrain") == [j.retrain.pk, j.other.pk]
    assert _job_ids(viewer_client, status="succeeded") == [j.compensation.pk, j.ping.pk]
    assert _job_ids(viewer_client, deployment=deployment.slug, kind="retrain", status="queued") == [j.retrain.pk]
    assert _job_ids(viewer_client, limit=2, offset=1) == [j.evaluation.pk, j.compensation.pk]


def test_a_job_row_has_its_deployment_requester_and_progress(
    viewer_client: APIClient, deployment: Deployment, job_set: JobSet
) -> None:
    r = viewer_client.get(f"/api/v1/jobs/{job_set.retrain.pk}")

    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["deployment"], body["kind"], body["status"], body["progress"]) == (
        deployment.slug,
        "retrain",
        "queued",
        0.0,
    )
    assert body["params"] == {"epochs": 3}
    assert body["requested_by"] == job_set.retrain.requested_by.username  # type: ignore[union-attr]
    assert viewer_client.get(f"/api/v1/jobs/{job_set.ping.pk}").json()["deployment"] is None
    assert viewer_client.get("/api/v1/jobs/999999").status_code == 404


@pytest.mark.parametrize(
    ("params", "field"), [({"deployment": "nope"}, "deployment"), ({"kind": "x"}, "kind"), ({"status": "x"}, "status")]
)
def test_bad_job_filters_are_400(viewer_client: APIClient, db: None, params: dict[str, str], field: str) -> None:
    r = viewer_client.get("/api/v1/jobs", params)

    assert r.status_code == 400
    assert r.json()["field"] == field


def test_cancelling_a_queued_job_is_final_and_safe_to_retry(operator_client: APIClient, job_set: JobSet) -> None:
    url = f"/api/v1/jobs/{job_set.retrain.pk}/cancel"

    r = operator_client.post(url, {"reason": "wrong parameters"}, format="json")
    again = operator_client.post(url, {"reason": "retry"}, format="json")

    assert r.status_code == again.status_code == 200, again.content
    body = r.json()
    username = operator_client.user.username
    assert body["status"] == "cancelled" and body["finished_at"]
    assert body["message"] == f"cancelled by {username}: wrong parameters"
    assert again.json() == body  # unchanged by the retry
    # The worker that receives the job's message later finds nothing to do.
    assert jobs.claim(job_set.retrain.pk, Job.Kind.RETRAIN) is None


def test_a_cancelled_running_job_stays_cancelled_when_its_worker_finishes(
    operator_client: APIClient, job_set: JobSet
) -> None:
    r = operator_client.post(f"/api/v1/jobs/{job_set.other.pk}/cancel", {}, format="json")

    assert r.status_code == 200, r.content
    jobs.succeed(job_set.other, message="done")
    job_set.other.refresh_from_db()
    assert job_set.other.status == Job.Status.CANCELLED
    assert job_set.other.message.startswith("cancelled by ")


@pytest.mark.parametrize("name", ["compensation", "evaluation"])
def test_a_finished_job_cannot_be_cancelled(operator_client: APIClient, job_set: JobSet, name: str) -> None:
    job: Job = getattr(job_set, name)

    r = operator_client.post(f"/api/v1/jobs/{job.pk}/cancel", {"reason": "x"}, format="json")

    assert r.status_code == 409
    assert r.json()["detail"] == f"job {job.pk} has already {job.status}; only queued or running jobs can be cancelled"
    job.refresh_from_db()
    assert job.finished_at is None and job.message == ""


def test_cancelling_an_unknown_job_is_404(operator_client: APIClient, db: None) -> None:
    assert operator_client.post("/api/v1/jobs/999999/cancel", {}, format="json").status_code == 404


# --- who may act -----------------------------------------------------------------------------------

ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "promote": ("deployments/{slug}/promote", {"version": 2, "reason": "r"}),
    "rollback": ("deployments/{slug}/rollback", {"version": 2, "reason": "r"}),
    "pause": ("deployments/{slug}/pause", {"reason": "r"}),
    "resume": ("deployments/{slug}/resume", {"reason": "r"}),
    "reset-memory": ("deployments/{slug}/reset-memory", {"reason": "r"}),
    "retrain": ("deployments/{slug}/retrain", {"reason": "r"}),
    "compare": ("deployments/{slug}/compare", {"old": 1, "new": 2}),
    "cancel": ("jobs/{job}/cancel", {"reason": "r"}),
}
READS = [
    "deployments/{slug}/releases",
    "deployments/{slug}/live",
    "deployments/{slug}/flip-reports",
    "deployments/{slug}/flip-reports/{report}",
    "jobs",
    "jobs/{job}",
]


@dataclass(frozen=True)
class Scene:
    deployment: Deployment
    job: Job
    report: FlipReport

    def url(self, path: str) -> str:
        return "/api/v1/" + path.format(slug=self.deployment.slug, job=self.job.pk, report=self.report.pk)

    def state(self) -> tuple[Any, ...]:
        return (
            _live_number(self.deployment),
            Deployment.objects.get(pk=self.deployment.pk).status,
            Deployment.objects.get(pk=self.deployment.pk).memory_revision,
            Release.objects.count(),
            AuditEntry.objects.count(),
            sorted(Job.objects.values_list("id", "status")),
        )


@pytest.fixture
def scene(two_versions: Deployment) -> Scene:
    _learn(two_versions, "s", 10, 1)
    job = Job.objects.create(deployment=two_versions, kind=Job.Kind.DRIFT_SCAN)
    return Scene(two_versions, job, _flip_report(two_versions, 1, 2))


def _forged_token_client() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "0f" * 20)
    return client


def _forged_key_client() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Key ik_0123456789_forged-secret")
    return client


REFUSED = [("anon", 401), ("forged_token", 401), ("forged_key", 401), ("norole", 403), ("viewer", 403), ("ingest", 403)]


@pytest.mark.parametrize("action", list(ACTIONS))
def test_only_operators_and_admins_may_act(request: pytest.FixtureRequest, scene: Scene, action: str) -> None:
    path, body = ACTIONS[action]
    forged = {"forged_token": _forged_token_client(), "forged_key": _forged_key_client()}
    clients = {role: forged.get(role) or request.getfixturevalue(f"{role}_client") for role, _ in REFUSED}
    before = scene.state()

    for role, status in REFUSED:
        r = clients[role].post(scene.url(path), body, format="json")
        assert r.status_code == status, (role, r.content)
        assert r.json()["error"] in ("not_authenticated", "authentication_failed", "permission_denied"), role
        assert scene.state() == before, role


def test_an_ingestion_key_of_the_deployment_itself_may_not_act(scene: Scene) -> None:
    _, raw = create_key(deployment=scene.deployment, name="edge", actor=None)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Key {raw}")
    before = scene.state()

    for path, body in ACTIONS.values():
        assert client.post(scene.url(path), body, format="json").status_code == 403, path
    for path in READS:
        assert client.get(scene.url(path)).status_code == 403, path
    assert scene.state() == before


def test_an_admin_may_act(admin_client: APIClient, scene: Scene) -> None:
    r = _post(admin_client, scene.deployment, "promote", {"version": 2, "reason": "admin"})

    assert r.status_code == 200, r.content
    assert r.json()["release"]["actor"] == admin_client.user.username


@pytest.mark.parametrize("path", READS)
def test_every_role_may_read_the_timeline_reports_and_jobs(
    request: pytest.FixtureRequest, scene: Scene, path: str
) -> None:
    for role, status in [("anon", 401), ("norole", 403), ("viewer", 200), ("operator", 200), ("admin", 200)]:
        client: APIClient = request.getfixturevalue(f"{role}_client")

        r = client.get(scene.url(path))

        assert r.status_code == status, (role, r.content)


@pytest.mark.parametrize("n", [2, 60])
def test_lists_cost_a_bounded_number_of_queries(
    viewer_client: APIClient, two_versions: Deployment, django_assert_max_num_queries: Any, n: int
) -> None:
    user = UserFactory.create()
    for i in range(n):
        Job.objects.create(deployment=two_versions, kind=Job.Kind.DRIFT_SCAN, status="succeeded", requested_by=user)
        _flip_report(two_versions, 1, 2)
        releases.promote(deployment=two_versions, number=2 - i % 2, actor=user, reason=f"round {i}")
    viewer_client.get("/api/v1/jobs")  # the first request also reads the token and role tables

    for url in ("/api/v1/jobs", _url(two_versions, "releases"), _url(two_versions, "flip-reports")):
        with django_assert_max_num_queries(6):
            r = viewer_client.get(url, {"limit": 500})
        assert r.status_code == 200 and len(r.json()["results"]) >= n


# --- schema ----------------------------------------------------------------------------------------


def test_every_action_and_read_is_documented_with_bodies_examples_and_errors(db: None) -> None:
    GENERATOR_STATS.reset()

    schema = SchemaGenerator().get_schema(request=None, public=True)

    assert not GENERATOR_STATS, f"drf-spectacular warned: {dict(GENERATOR_STATS._warn_cache)}"
    components = schema["components"]["schemas"]
    reason_required = {"promote": True, "rollback": True, "pause": True, "reset-memory": True, "resume": False}
    for action, (path, _) in ACTIONS.items():
        operation = schema["paths"]["/api/v1/" + path.replace("{job}", "{id}")]["post"]
        body = operation["requestBody"]["content"]["application/json"]
        request_schema = components[body["schema"]["$ref"].removeprefix("#/components/schemas/")]
        success = "202" if action in ("retrain", "compare") else "200"
        assert operation["summary"] and operation["description"], action
        assert body["examples"], action
        assert {success, "400", "403", "404"} <= set(operation["responses"]), action
        assert operation["responses"][success]["content"]["application/json"]["examples"], action
        if action in reason_required:
            assert ("reason" in request_schema.get("required", [])) is reason_required[action], action
    for path in READS:
        operation = schema["paths"]["/api/v1/" + path.replace("{job}", "{id}").replace("{report}", "{id}")]["get"]
        assert operation["summary"], path
        assert operation["responses"]["200"]["content"]["application/json"]["examples"], path
    rollback = schema["paths"]["/api/v1/deployments/{slug}/rollback"]["post"]["description"]
    assert "already live" in rollback and "409" in rollback
