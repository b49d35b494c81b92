"""The monitoring reads: windows, drift, detectors, memory and samples of one deployment."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from adaptive.models import Deployment, DriftMetric, ErrorSample, Window
from adaptive.services.registry import upload_version
from tests.factories import (
    WINDOW_START,
    DeploymentFactory,
    DriftMetricFactory,
    ErrorSampleFactory,
    EventFactory,
    MonitorStateFactory,
    WindowFactory,
    error_stream_state,
    model_artifacts,
    unit_key,
)

LISTS = ["windows", "drift", "detectors/signals", "samples"]
ENDPOINTS = [*LISTS, "detectors", "memory", "windows/{window}"]
# Token + role + deployment + count + page, with room for one more; never a query per row.
LIST_QUERIES = 6


def _url(deployment: Deployment, path: str) -> str:
    return f"/api/v1/deployments/{deployment.slug}/{path}"


def _get(client: APIClient, deployment: Deployment, path: str, **params: Any) -> Any:
    r = client.get(_url(deployment, path), params)
    assert r.status_code == 200, r.content
    return r.json()


def _hourly_windows(deployment: Deployment, n: int, **fields: Any) -> list[Window]:
    """n consecutive hour-long windows from WINDOW_START, created newest first (the table's order must not matter)."""
    return [
        WindowFactory.create(deployment=deployment, start=WINDOW_START + timedelta(hours=i), **fields)
        for i in reversed(range(n))
    ]


def _second_version(deployment: Deployment) -> int:
    weights, spec = model_artifacts(seed=5)
    version, _ = upload_version(deployment=deployment, spec=spec, weights=weights, actor=None)
    return version.pk


# --- windows -------------------------------------------------------------------------------------------


def test_windows_are_a_curve_oldest_first_with_every_metric(viewer_client: APIClient, deployment: Deployment) -> None:
    _hourly_windows(deployment, 3)
    WindowFactory.create(deployment=DeploymentFactory.create(), start=WINDOW_START)  # another deployment's

    body = _get(viewer_client, deployment, "windows")

    assert body["count"] == 3
    ends = [row["end"] for row in body["results"]]
    assert ends == ["2024-03-01T01:00:00Z", "2024-03-01T02:00:00Z", "2024-03-01T03:00:00Z"]
    first = body["results"][0]
    assert first["version"] == 1
    assert first["start"] == "2024-03-01T00:00:00Z"
    assert first["labeled_from"] == "2024-03-01T00:00:00Z" and first["labeled_to"] == "2024-03-01T01:00:00Z"
    assert (first["n_events"], first["n_labeled"]) == (120, 100)
    assert (first["base_auc"], first["compensated_auc"]) == (0.70, 0.74)
    assert (first["base_log_loss"], first["compensated_log_loss"]) == (0.60, 0.55)
    assert (first["base_accuracy"], first["compensated_accuracy"]) == (0.68, 0.71)
    assert (first["base_brier"], first["compensated_brier"]) == (0.21, 0.19)
    assert (first["memory_size"], first["memory_revision"]) == (100, 3)
    assert first["detector_signals"]["raw"]["adwin"] == {"detections": [], "drift": False}
    assert "drift_metrics" not in first


def test_windows_filter_by_end_since_inclusive_until_exclusive(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    _hourly_windows(deployment, 5)  # ends at 01:00 .. 05:00

    body = _get(viewer_client, deployment, "windows", since="2024-03-01T02:00:00Z", until="2024-03-01T04:00:00Z")

    assert [row["end"] for row in body["results"]] == ["2024-03-01T02:00:00Z", "2024-03-01T03:00:00Z"]


def test_a_time_offset_whose_plus_became_a_space_in_the_url_still_parses(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    _hourly_windows(deployment, 3)

    # An unencoded "+" in a query string is a space; "+01:00" arrives as " 01:00".
    r = viewer_client.get(_url(deployment, "windows") + "?since=2024-03-01T03:00:00+01:00")

    assert r.status_code == 200, r.content
    assert [row["end"] for row in r.json()["results"]] == [
        "2024-03-01T02:00:00Z",
        "2024-03-01T03:00:00Z",
    ]


def test_windows_filter_by_version_and_order_newest_first(viewer_client: APIClient, deployment: Deployment) -> None:
    v2 = _second_version(deployment)
    _hourly_windows(deployment, 2)
    WindowFactory.create(deployment=deployment, version_id=v2, start=WINDOW_START + timedelta(hours=5))
    WindowFactory.create(deployment=deployment, version=None, start=WINDOW_START + timedelta(hours=6))

    only_v1 = _get(viewer_client, deployment, "windows", version=1)
    newest = _get(viewer_client, deployment, "windows", order="desc")

    assert [row["version"] for row in only_v1["results"]] == [1, 1]
    assert [row["version"] for row in newest["results"]] == [None, 2, 1, 1]
    assert newest["results"][0]["end"] == "2024-03-01T07:00:00Z"


def test_windows_are_paginated_with_room_for_a_whole_chart(viewer_client: APIClient, deployment: Deployment) -> None:
    start = WINDOW_START
    Window.objects.bulk_create(
        Window(deployment=deployment, version=deployment.live_version, start=start, end=start + timedelta(minutes=i))
        for i in range(120)
    )

    default = _get(viewer_client, deployment, "windows")
    second = _get(viewer_client, deployment, "windows", limit=10, offset=10)
    whole = _get(viewer_client, deployment, "windows", limit=5000)

    assert default["count"] == 120 and len(default["results"]) == 50 and "offset=50" in default["next"]
    assert [row["end"] for row in second["results"]] == [
        (start + timedelta(minutes=i)).isoformat().replace("+00:00", "Z") for i in range(10, 20)
    ]
    assert len(whole["results"]) == 120 and whole["next"] is None


def test_window_detail_includes_its_drift_metrics(viewer_client: APIClient, deployment: Deployment) -> None:
    window = WindowFactory.create(deployment=deployment)
    DriftMetricFactory.create(window=window, column="distance", method="ks", level="drift", p_value=0.001)
    DriftMetricFactory.create(window=window, column="prediction", column_kind="prediction", method="psi", p_value=None)
    DriftMetricFactory.create(window=window, column="carrier", method="chisquare", level="warn")
    DriftMetricFactory.create(
        window=WindowFactory.create(deployment=deployment, start=WINDOW_START + timedelta(hours=1))
    )

    body = _get(viewer_client, deployment, f"windows/{window.pk}")

    assert body["id"] == window.pk and body["version"] == 1 and body["compensated_auc"] == 0.74
    assert [(m["column"], m["method"], m["level"]) for m in body["drift_metrics"]] == [
        ("carrier", "chisquare", "warn"),
        ("distance", "ks", "drift"),
        ("prediction", "psi", "ok"),
    ]
    assert body["drift_metrics"][2]["p_value"] is None
    assert set(body["drift_metrics"][0]) == {
        "id",
        "column",
        "column_kind",
        "method",
        "statistic",
        "p_value",
        "threshold",
        "level",
        "severity",
        "importance",
        "psi",
        "histogram",
    }


def test_a_window_of_another_deployment_is_404(viewer_client: APIClient, deployment: Deployment) -> None:
    theirs = WindowFactory.create(deployment=DeploymentFactory.create())

    r = viewer_client.get(_url(deployment, f"windows/{theirs.pk}"))

    assert r.status_code == 404


# --- drift -----------------------------------------------------------------------------------------------


@pytest.fixture
def drift_grid(deployment: Deployment) -> list[Window]:
    """Three windows x three columns; distance drifts in the last window, carrier warns in the second."""
    windows = _hourly_windows(deployment, 3)[::-1]
    for i, window in enumerate(windows):
        DriftMetricFactory.create(window=window, column="distance", level="drift" if i == 2 else "ok")
        DriftMetricFactory.create(
            window=window, column="carrier", method="chisquare", level="warn" if i == 1 else "ok", p_value=0.07
        )
        DriftMetricFactory.create(
            window=window, column="prediction", column_kind="prediction", method="psi", statistic=0.02, p_value=None
        )
    return windows


def test_drift_rows_carry_their_window_and_come_in_grid_order(
    viewer_client: APIClient, deployment: Deployment, drift_grid: list[Window]
) -> None:
    body = _get(viewer_client, deployment, "drift")

    assert body["count"] == 9
    cells = [(row["window"], row["column"]) for row in body["results"]]
    assert cells == [(w.pk, c) for w in drift_grid for c in ("carrier", "distance", "prediction")]
    first = body["results"][0]
    assert first["window_start"] == "2024-03-01T00:00:00Z" and first["window_end"] == "2024-03-01T01:00:00Z"
    assert first["version"] == 1
    assert (first["column_kind"], first["method"], first["p_value"], first["threshold"]) == (
        "feature",
        "chisquare",
        0.07,
        0.05,
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"column": ["distance", "carrier"], "level": ["warn", "drift"]}, [(1, "carrier"), (2, "distance")]),
        ({"column_kind": "prediction"}, [(0, "prediction"), (1, "prediction"), (2, "prediction")]),
        ({"method": "ks", "since": "2024-03-01T02:00:00Z"}, [(1, "distance"), (2, "distance")]),
        ({"level": "drift", "until": "2024-03-01T03:00:00Z"}, []),
        ({"column": "distance", "order": "desc"}, [(2, "distance"), (1, "distance"), (0, "distance")]),
    ],
)
def test_drift_filters(
    viewer_client: APIClient,
    deployment: Deployment,
    drift_grid: list[Window],
    params: dict[str, Any],
    expected: list[tuple[int, str]],
) -> None:
    body = _get(viewer_client, deployment, "drift", **params)

    index = {w.pk: i for i, w in enumerate(drift_grid)}
    assert [(index[row["window"]], row["column"]) for row in body["results"]] == expected


# --- calibrated alarms, severity and histograms ---------------------------------------------------------

ALARMS = [
    {"kind": "drift_status", "level": "drift", "calibrated": True, "reason": "distance drifted (severity 2.4)"},
    {"kind": "retrain_trigger", "level": "warn", "calibrated": True, "reason": "loss CUSUM 3.1 of 5.0"},
    {"kind": "detector", "level": "info", "calibrated": False, "reason": "adwin on the raw error"},
]
NUMERIC_HISTOGRAM = {
    "kind": "numeric",
    "edges": [float(i) for i in range(21)],
    "reference": [0.05] * 20,
    "current": [0.1] * 10 + [0.0] * 10,
}
CATEGORICAL_HISTOGRAM = {
    "kind": "categorical",
    "categories": ["AA", "UA"],
    "reference": [0.5, 0.5],
    "current": [0.9, 0.1],
}


def test_windows_carry_the_drift_status_loss_cusum_alarms_and_label_free_estimates(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    window = WindowFactory.create(
        deployment=deployment,
        drift_status="drift",
        loss_cusum=3.1,
        alarms=ALARMS,
        estimated_base_auc=0.69,
        estimated_compensated_auc=0.73,
        estimated_base_accuracy=0.67,
        estimated_compensated_accuracy=None,
    )
    WindowFactory.create(
        deployment=deployment, start=WINDOW_START + timedelta(hours=1)
    )  # before the service fills them

    rows = _get(viewer_client, deployment, "windows")["results"]
    detail = _get(viewer_client, deployment, f"windows/{window.pk}")

    for row in (rows[0], detail):
        assert (row["drift_status"], row["loss_cusum"], row["alarms"]) == ("drift", 3.1, ALARMS)
        assert (row["estimated_base_auc"], row["estimated_compensated_auc"]) == (0.69, 0.73)
        assert (row["estimated_base_accuracy"], row["estimated_compensated_accuracy"]) == (0.67, None)
    fresh = rows[1]
    assert (fresh["drift_status"], fresh["loss_cusum"], fresh["alarms"], fresh["estimated_base_auc"]) == (
        "ok",
        None,
        [],
        None,
    )


def test_drift_rows_carry_severity_importance_and_psi_but_not_the_histogram(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    window = WindowFactory.create(deployment=deployment)
    DriftMetricFactory.create(
        window=window,
        column="distance",
        method="wasserstein",
        statistic=0.24,
        threshold=0.1,
        p_value=0.001,
        level="drift",
        severity=2.4,
        importance=0.35,
        psi=0.31,
        histogram=NUMERIC_HISTOGRAM,
    )
    DriftMetricFactory.create(window=window, column="prediction", column_kind="prediction", method="wasserstein")

    distance, prediction = _get(viewer_client, deployment, "drift")["results"]

    assert (distance["method"], distance["statistic"], distance["threshold"], distance["p_value"]) == (
        "wasserstein",
        0.24,
        0.1,
        0.001,
    )
    assert (distance["severity"], distance["importance"], distance["psi"]) == (2.4, 0.35, 0.31)
    assert (prediction["severity"], prediction["importance"], prediction["psi"]) == (None, None, None)
    assert "histogram" not in distance


def test_the_window_detail_has_each_drift_tests_histogram(viewer_client: APIClient, deployment: Deployment) -> None:
    window = WindowFactory.create(deployment=deployment)
    DriftMetricFactory.create(window=window, column="distance", severity=0.4, histogram=NUMERIC_HISTOGRAM)
    DriftMetricFactory.create(
        window=window, column="carrier", method="jensenshannon", severity=1.7, histogram=CATEGORICAL_HISTOGRAM
    )
    DriftMetricFactory.create(window=window, column="dep_delay")  # written before histograms were kept

    metrics = _get(viewer_client, deployment, f"windows/{window.pk}")["drift_metrics"]

    by_column = {m["column"]: m for m in metrics}
    assert by_column["distance"]["histogram"] == NUMERIC_HISTOGRAM
    assert by_column["carrier"]["histogram"] == CATEGORICAL_HISTOGRAM
    assert (by_column["carrier"]["severity"], by_column["distance"]["severity"]) == (1.7, 0.4)
    assert by_column["dep_delay"]["histogram"] == {}


def test_the_schema_documents_alarms_histograms_and_severity(db: None) -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)

    components = schema["components"]["schemas"]
    window = components["Window"]["properties"]
    alarm = window["alarms"]["items"]
    if "$ref" in alarm:
        alarm = components[alarm["$ref"].rsplit("/", 1)[1]]
    assert set(alarm["properties"]) == {"kind", "level", "calibrated", "reason"}
    assert {"drift_status", "loss_cusum", "estimated_base_auc", "estimated_compensated_accuracy"} <= set(window)
    row = components["DriftRow"]["properties"]
    assert {"severity", "importance", "psi"} <= set(row) and "histogram" not in row
    detail = components["DriftMetricDetail"]["properties"]
    assert "histogram" in detail
    # Rows from before histograms were kept hold {}: no key may be required.
    assert set(components["Histogram"]["properties"]) >= {"kind", "edges", "categories", "reference", "current"}
    assert not components["Histogram"].get("required")


# --- detectors -------------------------------------------------------------------------------------------


def _stable(n: int) -> list[float]:
    return [1.0 if i % 10 == 0 else 0.0 for i in range(n)]


def test_detector_state_summarises_each_stream_without_the_stored_errors(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    # The raw error rate jumps from 10% to 100%: the detectors fire; the compensated stream stays at 10%.
    raw = error_stream_state(_stable(400) + [1.0] * 200)
    compensated = error_stream_state(_stable(600))
    MonitorStateFactory.create(deployment=deployment, detectors={"raw": raw, "compensated": compensated})

    body = _get(viewer_client, deployment, "detectors")

    assert body["version"] == 1 and body["live"] is True and body["updated_at"]
    assert [stream["stream"] for stream in body["streams"]] == ["raw", "compensated"]
    raw_summary, comp_summary = body["streams"]
    assert [d["detector"] for d in raw_summary["detectors"]] == ["adwin", "page_hinkley", "kswin", "ddm"]
    saved = {kind: (bank, entry) for bank in raw.values() for kind, entry in bank["detectors"].items()}
    for detector in raw_summary["detectors"]:
        bank, entry = saved[detector["detector"]]
        assert detector["n_seen"] == 600
        assert detector["n_detections"] == entry["n_detections"]
        assert detector["last_detection_at"] == entry["last_detection_at"]
        assert (detector["history"], detector["stored"]) == (bank["history"], entry["stream_length"])
        assert detector["params"] == entry["params"]
    by_kind = {d["detector"]: d for d in raw_summary["detectors"]}
    assert by_kind["adwin"]["n_detections"] >= 1 and by_kind["ddm"]["n_detections"] >= 1
    assert by_kind["ddm"]["since_last_detection"] == 599 - by_kind["ddm"]["last_detection_at"]
    assert by_kind["kswin"]["history"] == 100
    assert by_kind["adwin"]["warning"] is None and isinstance(by_kind["ddm"]["warning"], bool)
    assert all(d["n_detections"] == 0 and d["since_last_detection"] is None for d in comp_summary["detectors"])
    assert comp_summary["drift"] is False and comp_summary["warning"] is False
    # Every detector's saved state restores it exactly (KSWIN keeps its sampler, ADWIN is within history).
    assert all(d["restore_exact"] for d in comp_summary["detectors"])
    # The stored errors themselves (up to 5,000 per detector bank) stay out of the response.
    assert set(raw_summary) == {"stream", "drift", "warning", "detectors"}
    assert "stream" not in by_kind["adwin"]


def test_ddm_warning_zone_is_reported(viewer_client: APIClient, deployment: Deployment) -> None:
    from adaptive.ml.drift import DetectorBank

    # Feed a rising error rate until DDM is in its warning zone but has not fired.
    bank = DetectorBank(["ddm"])
    errors = _stable(500)
    bank.update_many(errors)
    step = 0
    while not bank.detectors["ddm"].warning_detected:
        step += 1
        bank.update_many([1.0 if step % 3 else 0.0])
        assert bank.detectors["ddm"].n_detections == 0, "fired before warning"
    # A stream saved as a single DetectorBank state (rather than banks by name) reads the same.
    MonitorStateFactory.create(deployment=deployment, detectors={"compensated": bank.state_dict()})

    (stream,) = _get(viewer_client, deployment, "detectors")["streams"]

    assert stream["warning"] is True and stream["drift"] is False
    assert stream["detectors"][0]["warning"] is True


def test_detector_state_of_another_version_and_when_none_was_saved(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    v2 = _second_version(deployment)
    MonitorStateFactory.create(
        deployment=deployment, version_id=v2, detectors={"raw": error_stream_state(_stable(50)), "compensated": {}}
    )

    live = _get(viewer_client, deployment, "detectors")
    candidate = _get(viewer_client, deployment, "detectors", version=2)

    assert live == {"version": 1, "live": True, "updated_at": None, "streams": []}
    assert candidate["version"] == 2 and candidate["live"] is False
    # A stream whose detectors have taken nothing yet is left out.
    assert [stream["stream"] for stream in candidate["streams"]] == ["raw"]
    assert candidate["streams"][0]["detectors"][0]["n_seen"] == 50


def test_an_unreadable_detector_state_is_reported_not_a_500(viewer_client: APIClient, deployment: Deployment) -> None:
    good = error_stream_state(_stable(50))
    broken = {**good, "error": {"format": 99}}
    MonitorStateFactory.create(deployment=deployment, detectors={"raw": broken, "compensated": good})

    raw, compensated = _get(viewer_client, deployment, "detectors")["streams"]

    assert raw["detectors"] == [] and "unreadable" in raw["error"]
    assert len(compensated["detectors"]) == 4


def test_detector_signal_timeline_comes_from_the_windows(viewer_client: APIClient, deployment: Deployment) -> None:
    fired = {"raw": {"adwin": {"detections": [17], "drift": True}}, "compensated": {}}
    _hourly_windows(deployment, 2)
    WindowFactory.create(deployment=deployment, start=WINDOW_START + timedelta(hours=2), detector_signals=fired)

    body = _get(viewer_client, deployment, "detectors/signals", since="2024-03-01T02:00:00Z")

    assert [row["end"] for row in body["results"]] == ["2024-03-01T02:00:00Z", "2024-03-01T03:00:00Z"]
    assert body["results"][1]["signals"] == fired
    assert set(body["results"][0]) == {"window", "version", "start", "end", "n_labeled", "signals"}


# --- memory ----------------------------------------------------------------------------------------------


def test_memory_stats_of_the_live_version(viewer_client: APIClient, deployment: Deployment) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(memory_revision=7, memory_epoch=2)
    for revision, label in enumerate([1, 1, 1, 0], start=1):
        ErrorSampleFactory.create(deployment=deployment, label=label, revision=revision, key=unit_key(seed=revision))
    ErrorSampleFactory.create(deployment=deployment, label=0, revision=5, active=False)  # evicted
    ErrorSampleFactory.create(deployment=deployment, version_id=_second_version(deployment), revision=6)
    # Two labels wait for the memory; one is already in; one has no key (nothing to write).
    EventFactory.create(deployment=deployment, label=1, key=unit_key(), memory_revision=None)
    EventFactory.create(deployment=deployment, label=0, key=unit_key(seed=1), memory_revision=None)
    EventFactory.create(deployment=deployment, label=1, key=unit_key(seed=2), memory_revision=7)
    EventFactory.create(deployment=deployment, label=1, key=None, memory_revision=None)

    body = _get(viewer_client, deployment, "memory")

    assert body["version"] == 1 and body["live"] is True
    assert (body["memory_kind"], body["compensation_enabled"]) == ("exact", True)
    assert (body["capacity"], body["k"]) == (50_000, 100)
    assert (body["compensation_lambda"], body["compensation_gamma"], body["compensation_tau"]) == (0.7, 0.5, 0.05)
    assert (body["revision"], body["epoch"]) == (7, 2)
    assert body["size"] == 4
    assert body["key_dim"] == 8
    assert body["pending_labels"] == 2
    assert body["oldest_sample_at"] == "2024-03-01T00:01:00Z"
    assert body["newest_sample_at"] == "2024-03-01T00:04:00Z"
    assert body["label_balance"] == [
        {"label": 0, "name": "0", "count": 1, "share": 0.25},
        {"label": 1, "name": "1", "count": 3, "share": 0.75},
    ]


def test_memory_support_measures_evidence_near_the_latest_served_events(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(memory_revision=3)
    for seed in range(3):
        ErrorSampleFactory.create(deployment=deployment, revision=seed + 1, key=unit_key(seed=seed))
    # Served events whose keys are the stored ones: the memory has evidence right there.
    for seed in range(3):
        EventFactory.create(
            deployment=deployment, key=unit_key(seed=seed), event_time=WINDOW_START + timedelta(seconds=seed)
        )

    body = _get(viewer_client, deployment, "memory")

    support = body["support"]
    assert support["events"] == 3
    assert support["hit_rate"] == 1.0
    assert support["mean_support"] > 0
    assert 0 < support["mean_weight"] < 1


def test_memory_support_without_served_keys_is_empty(viewer_client: APIClient, deployment: Deployment) -> None:
    body = _get(viewer_client, deployment, "memory")

    assert body["size"] == 0 and body["label_balance"] == [] and body["oldest_sample_at"] is None
    assert body["support"] == {"events": 0, "hit_rate": None, "mean_support": None, "mean_weight": None}


def test_memory_of_a_version_that_is_not_live_has_no_support_figure(
    viewer_client: APIClient, deployment: Deployment
) -> None:
    v2 = _second_version(deployment)
    ErrorSampleFactory.create(deployment=deployment, version_id=v2, label=0)

    body = _get(viewer_client, deployment, "memory", version=2)

    assert (body["version"], body["live"], body["size"], body["support"]) == (2, False, 1, None)
    assert body["label_balance"] == [{"label": 0, "name": "0", "count": 1, "share": 1.0}]


def test_memory_of_an_external_deployment(viewer_client: APIClient, db: None) -> None:
    external = DeploymentFactory.create(serving=Deployment.Serving.EXTERNAL, key_dim=8, classes=["no", "yes"])
    ErrorSampleFactory.create(deployment=external, version=None, label=1)
    ErrorSampleFactory.create(deployment=external, version=None, label=0)

    body = _get(viewer_client, external, "memory")
    with_version = viewer_client.get(_url(external, "memory"), {"version": 1})

    assert (body["version"], body["live"], body["size"], body["key_dim"]) == (None, True, 2, 8)
    assert [b["name"] for b in body["label_balance"]] == ["no", "yes"]
    assert with_version.status_code == 400 and with_version.json()["field"] == "version"


def test_memory_of_a_deployment_without_versions(viewer_client: APIClient, empty_deployment: Deployment) -> None:
    body = _get(viewer_client, empty_deployment, "memory")

    assert (body["version"], body["size"], body["support"]) == (None, 0, None)


# --- samples ---------------------------------------------------------------------------------------------


def test_samples_are_listed_newest_first_without_keys(viewer_client: APIClient, deployment: Deployment) -> None:
    event = EventFactory.create(deployment=deployment, external_id="flight-42")
    ErrorSampleFactory.create(deployment=deployment, revision=1, event=event, label=1, base_score=0.2)
    ErrorSampleFactory.create(deployment=deployment, revision=2, label=0, active=False)
    ErrorSampleFactory.create(deployment=DeploymentFactory.create(), version=None, revision=3)  # another deployment's

    body = _get(viewer_client, deployment, "samples")

    assert [row["revision"] for row in body["results"]] == [2, 1]
    newest, oldest = body["results"]
    assert set(oldest) == {
        "id",
        "event",
        "version",
        "label",
        "base_score",
        "base_proba",
        "revision",
        "written_at",
        "active",
    }
    assert (oldest["event"], oldest["version"], oldest["label"], oldest["base_score"]) == ("flight-42", 1, 1, 0.2)
    assert oldest["written_at"] == "2024-03-01T00:01:00Z" and oldest["active"] is True
    assert (newest["event"], newest["active"]) == (None, False)


@pytest.mark.parametrize(
    ("params", "revisions"),
    [
        ({}, [5, 4, 3, 2, 1]),
        ({"active": "true"}, [5, 3, 2, 1]),
        ({"active": "false"}, [4]),
        ({"label": 0}, [5]),
        ({"version": 2}, [3]),
        ({"since": "2024-03-01T00:02:00Z", "until": "2024-03-01T00:04:00Z"}, [3, 2]),
    ],
)
def test_samples_filters(
    viewer_client: APIClient, deployment: Deployment, params: dict[str, Any], revisions: list[int]
) -> None:
    v2 = _second_version(deployment)
    ErrorSampleFactory.create(deployment=deployment, revision=1)
    ErrorSampleFactory.create(deployment=deployment, revision=2)
    ErrorSampleFactory.create(deployment=deployment, revision=3, version_id=v2)
    ErrorSampleFactory.create(deployment=deployment, revision=4, active=False)
    ErrorSampleFactory.create(deployment=deployment, revision=5, label=0)

    body = _get(viewer_client, deployment, "samples", **params)

    assert [row["revision"] for row in body["results"]] == revisions


# --- errors, permissions, query counts ---------------------------------------------------------------


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2024-13-01T00:00:00Z"}, "until"),
        ({"since": "2024-03-02T00:00:00Z", "until": "2024-03-01T00:00:00Z"}, "until"),
        ({"since": "2024-03-01T00:00:00Z", "until": "2024-03-01T00:00:00Z"}, "until"),
        ({"version": "two"}, "version"),
        ({"version": 0}, "version"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_field(
    viewer_client: APIClient, deployment: Deployment, path: str, params: dict[str, Any], field: str
) -> None:
    r = viewer_client.get(_url(deployment, path), params)

    assert r.status_code == 400, r.content
    body = r.json()
    assert body["error"] == "invalid" and body["field"] == field and body["detail"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("drift", {"level": "bad"}, "level"),
        ("drift", {"column_kind": "weather"}, "column_kind"),
        ("windows", {"order": "sideways"}, "order"),
        ("samples", {"active": "maybe"}, "active"),
        ("samples", {"label": -1}, "label"),
        ("memory", {"version": 9}, "version"),
        ("detectors", {"version": 9}, "version"),
        ("detectors", {"version": "x"}, "version"),
    ],
)
def test_bad_filters_are_400(
    viewer_client: APIClient, deployment: Deployment, path: str, params: dict[str, Any], field: str
) -> None:
    r = viewer_client.get(_url(deployment, path), params)

    assert r.status_code == 400, r.content
    assert r.json()["field"] == field


@pytest.mark.parametrize("path", ENDPOINTS)
def test_an_unknown_deployment_is_404(viewer_client: APIClient, db: None, path: str) -> None:
    r = viewer_client.get("/api/v1/deployments/nope/" + path.format(window=1))

    assert r.status_code == 404
    assert r.json()["detail"]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    ("role", "status"),
    [("anon", 401), ("norole", 403), ("ingest", 403), ("viewer", 200), ("operator", 200), ("admin", 200)],
)
def test_every_role_reads_and_an_ingestion_key_may_not(
    request: pytest.FixtureRequest, deployment: Deployment, path: str, role: str, status: int
) -> None:
    window = WindowFactory.create(deployment=deployment)
    client: APIClient = request.getfixturevalue(f"{role}_client")

    r = client.get(_url(deployment, path.format(window=window.pk)))

    assert r.status_code == status, r.content


@pytest.mark.parametrize("n", [2, 200])
def test_each_endpoint_costs_a_bounded_number_of_queries(
    viewer_client: APIClient, deployment: Deployment, django_assert_max_num_queries: Any, n: int
) -> None:
    version = deployment.live_version
    windows = Window.objects.bulk_create(
        Window(
            deployment=deployment,
            version=version,
            start=WINDOW_START,
            end=WINDOW_START + timedelta(minutes=i),
            detector_signals={"raw": {"adwin": {"drift": False, "detections": []}}},
        )
        for i in range(n)
    )
    DriftMetric.objects.bulk_create(
        DriftMetric(window=w, column=c, method="ks", statistic=0.1, threshold=0.05, level="ok")
        for w in windows
        for c in ("a", "b")
    )
    events = [EventFactory.create(deployment=deployment, label=1, key=unit_key(seed=i)) for i in range(min(n, 20))]
    ErrorSample.objects.bulk_create(
        ErrorSample(
            deployment=deployment,
            version=version,
            event=events[i % len(events)] if i < len(events) else None,
            key=unit_key(seed=i),
            label=i % 2,
            base_score=0.5,
            revision=i + 1,
            written_at=WINDOW_START,
        )
        for i in range(n)
    )
    Deployment.objects.filter(pk=deployment.pk).update(memory_revision=n)
    MonitorStateFactory.create(
        deployment=deployment, detectors={"raw": error_stream_state(_stable(100)), "compensated": {}}
    )
    viewer_client.get(_url(deployment, "windows"))  # the first request also reads the session/token tables

    for path in LISTS:
        with django_assert_max_num_queries(LIST_QUERIES):
            _get(viewer_client, deployment, path, limit=5000)
    with django_assert_max_num_queries(LIST_QUERIES):
        _get(viewer_client, deployment, f"windows/{windows[0].pk}")
    with django_assert_max_num_queries(LIST_QUERIES):
        _get(viewer_client, deployment, "detectors")
    # Memory: the grouped sample read, the key length, pending labels, the served keys, and loading
    # the in-process memory (a couple of chunked reads) on top of the request's own queries.
    with django_assert_max_num_queries(LIST_QUERIES + 6):
        _get(viewer_client, deployment, "memory")


# --- schema ----------------------------------------------------------------------------------------------


def test_the_monitoring_endpoints_are_documented_without_schema_warnings(db: None) -> None:
    GENERATOR_STATS.reset()

    schema = SchemaGenerator().get_schema(request=None, public=True)

    assert not GENERATOR_STATS, f"drf-spectacular warned: {dict(GENERATOR_STATS._warn_cache)}"
    paths = schema["paths"]
    for path in ENDPOINTS:
        documented = "/api/v1/deployments/{slug}/" + path.replace("{window}", "{id}")
        assert set(paths[documented]) == {"get"}, documented
        assert paths[documented]["get"]["summary"]
    windows = paths["/api/v1/deployments/{slug}/windows"]["get"]
    names = {p["name"] for p in windows["parameters"]}
    assert {"since", "until", "version", "order", "limit", "offset"} <= names
    assert {"400", "404"} <= set(windows["responses"])
    drift = {p["name"] for p in paths["/api/v1/deployments/{slug}/drift"]["get"]["parameters"]}
    assert {"column", "column_kind", "level", "method", "since", "until"} <= drift
