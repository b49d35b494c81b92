"""The adaptation curve of one deployment: base vs compensated metrics per window, with markers.

Windows are placed in the order they closed, one point each. Their ``start``/``end`` are event
times (a replay of last year's data has last year's dates), while retrains, promotions and
rollbacks happen in wall-clock time; so a marker is placed by *when windows closed*: at the
position of the first window that closed after it (``created_at``), i.e. between the last window
served before the change and the first one after. Reads windows, versions and releases only, and
for the label-free estimates beyond the last window, the newest served scores
(adaptive.selectors.estimates, bounded).
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime
from typing import Any

from django.db.models import F, FloatField, Func

from adaptive.models import Deployment, ModelVersion, Release, Window
from adaptive.selectors.estimates import pending_estimates

METRICS = ("auc", "log_loss", "accuracy", "brier")
# Label-free estimates per window (confidence-based, from the scores alone): AUC and accuracy only.
ESTIMATED = tuple(f"estimated_{side}_{metric}" for side in ("base", "compensated") for metric in ("auc", "accuracy"))
# Pending (label-free) windows beyond the last realised one, by default.
PENDING_WINDOWS = 5
# The most windows one curve returns (the newest ones); a year of hourly windows is 8,760.
MAX_WINDOWS = 10_000


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


class Epoch(Func):
    """Seconds since 1970 of a datetime column, as a float.

    Thousands of timestamps per curve: psycopg's timezone-aware datetime loader costs about 12 µs
    each (72 ms of a 110 ms curve of 2,000 windows), a float next to nothing.
    """

    output_field = FloatField()

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::double precision")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        # Django keeps SQLite datetimes as UTC text; julianday() reads it, 2440587.5 is 1970-01-01.
        return self.as_sql(compiler, connection, template="(julianday(%(expressions)s) - 2440587.5) * 86400.0")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def _windows(deployment: Deployment, since: datetime | None, until: datetime | None, limit: int) -> list[dict]:
    rows = Window.objects.filter(deployment=deployment)
    if since is not None:
        rows = rows.filter(end__gte=since)
    if until is not None:
        rows = rows.filter(end__lt=until)
    fields = ["id", "end_s", "closed_s", "n_labeled", "memory_size", "version_number"]
    fields += [f"{side}_{metric}" for metric in METRICS for side in ("base", "compensated")]
    fields += ESTIMATED
    newest = (
        rows.annotate(version_number=F("version__number"), end_s=Epoch("end"), closed_s=Epoch("created_at"))
        .order_by("-end", "-id")
        .values(*fields)[:limit]
    )
    # Closing order and event-time order agree (each window takes the labels after the previous
    # one); sorting by closing time keeps markers and points on one axis even if a replay does not.
    return sorted(newest, key=lambda row: (row["closed_s"], row["id"]))


def _markers(deployment: Deployment, closed_at: list[float]) -> list[dict[str, Any]]:
    # A deployment has tens to hundreds of releases and versions, not thousands of windows' worth.
    markers: list[dict[str, Any]] = []
    releases = Release.objects.filter(deployment=deployment, kind__in=[Release.Kind.PROMOTION, Release.Kind.ROLLBACK])
    retrains = ModelVersion.objects.filter(deployment=deployment, origin=ModelVersion.Origin.RETRAINED)
    for release in releases.annotate(number=F("version__number")).values(
        "kind", "started_at", "number", "actor_label", "reason"
    ):
        verb = "promoted" if release["kind"] == Release.Kind.PROMOTION else "rolled back to"
        markers.append(
            {
                "kind": release["kind"],
                "at": release["started_at"],
                "version": release["number"],
                "label": f"{release['actor_label']} {verb} v{release['number']}",
                "reason": release["reason"],
            }
        )
    for version in retrains.annotate(parent_number=F("parent__number")).values("number", "created_at", "parent_number"):
        source = f" from v{version['parent_number']}" if version["parent_number"] else ""
        markers.append(
            {
                "kind": "retrain",
                "at": version["created_at"],
                "version": version["number"],
                "label": f"v{version['number']} retrained{source}",
                "reason": "",
            }
        )
    for marker in markers:
        # Index of the first window that closed after the event: the marker sits just before it.
        marker["position"] = bisect_right(closed_at, marker["at"].timestamp())
    markers.sort(key=lambda marker: (marker["at"], marker["kind"]))
    return markers


def adaptation_curve(
    deployment: Deployment,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = MAX_WINDOWS,
    pending: int = PENDING_WINDOWS,
) -> dict[str, Any]:
    """Column arrays, one entry per window (oldest first), the markers placed on the same axis, and
    the label-free estimates of up to ``pending`` window-sized chunks of traffic after the last window.

    When the windows are a slice (a time range, or the newest ``limit``), markers from before the
    slice are left out; otherwise they sit at position 0, before the first window. The pending
    chunks continue the curve to now, so a range with an ``until`` has none.
    """
    rows = _windows(deployment, since, until, limit)
    closed_at = [row["closed_s"] for row in rows]
    sliced = since is not None or until is not None or len(rows) == limit
    curve: dict[str, Any] = {
        "id": [row["id"] for row in rows],
        "end": [_iso(row["end_s"]) for row in rows],
        "version": [row["version_number"] for row in rows],
        "n_labeled": [row["n_labeled"] for row in rows],
        "memory_size": [row["memory_size"] for row in rows],
    }
    for metric in METRICS:
        for side in ("base", "compensated"):
            curve[f"{side}_{metric}"] = [_round(row[f"{side}_{metric}"]) for row in rows]
    for name in ESTIMATED:
        curve[name] = [_round(row[name]) for row in rows]
    markers = _markers(deployment, closed_at)
    if sliced:
        markers = [marker for marker in markers if 0 < marker["position"] <= len(rows)]
    chunks = pending_estimates(deployment, max_windows=pending) if until is None and pending > 0 else []
    columns: dict[str, list[Any]] = {
        "start": [chunk["start"].isoformat() for chunk in chunks],
        "end": [chunk["end"].isoformat() for chunk in chunks],
        "n_events": [chunk["n_events"] for chunk in chunks],
    }
    for name in ESTIMATED:
        columns[name] = [_round(chunk[name]) for chunk in chunks]
    return {"windows": curve, "markers": markers, "pending": columns}
