from tests.factories import make_rows


def test_predict_then_feedback_round_trip(ingest_client, deployment):
    rows = [{"id": f"e{i}", "features": f} for i, f in enumerate(make_rows(5))]
    r = ingest_client.post(f"/api/v1/deployments/{deployment.slug}/predict", {"rows": rows}, format="json")
    assert r.status_code == 200, r.content
    preds = r.json()["predictions"]
    assert [p["id"] for p in preds] == [f"e{i}" for i in range(5)]
    assert all(0 <= p["score"] <= 1 and p["version"] == 1 for p in preds)
    r = ingest_client.post(
        f"/api/v1/deployments/{deployment.slug}/feedback",
        {"labels": [{"id": "e0", "label": 1}, {"id": "nope", "label": 0}]},
        format="json",
    )
    assert r.status_code == 200, r.content
    assert r.json() == {"accepted": 1, "unknown": ["nope"], "already_labeled": []}
