from django.urls import path

from api.views import control, dashboard, flip_reports, health, ingest, jobs, monitoring, registry, releases, tokens

app_name = "api"

urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
    path("loop", health.LoopView.as_view(), name="loop"),
    path("overview", dashboard.OverviewView.as_view(), name="overview"),
    path("audit", dashboard.AuditListView.as_view(), name="audit-list"),
    path("deployments", registry.DeploymentListView.as_view(), name="deployment-list"),
    path("deployments/<slug:slug>", registry.DeploymentDetailView.as_view(), name="deployment-detail"),
    path("deployments/<slug:slug>/versions", registry.VersionListView.as_view(), name="version-list"),
    path("deployments/<slug:slug>/versions/<int:number>", registry.VersionDetailView.as_view(), name="version-detail"),
    path("deployments/<slug:slug>/keys", registry.IngestionKeyListView.as_view(), name="key-list"),
    path("deployments/<slug:slug>/keys/<int:id>/revoke", registry.IngestionKeyRevokeView.as_view(), name="key-revoke"),
    path("deployments/<slug:slug>/predict", ingest.PredictView.as_view(), name="predict"),
    path("deployments/<slug:slug>/compensate", ingest.CompensateView.as_view(), name="compensate"),
    path("deployments/<slug:slug>/feedback", ingest.FeedbackView.as_view(), name="feedback"),
    path("deployments/<slug:slug>/curve", dashboard.CurveView.as_view(), name="curve"),
    path("deployments/<slug:slug>/windows", monitoring.WindowListView.as_view(), name="window-list"),
    path("deployments/<slug:slug>/windows/<int:id>", monitoring.WindowDetailView.as_view(), name="window-detail"),
    path("deployments/<slug:slug>/drift", monitoring.DriftListView.as_view(), name="drift-list"),
    path("deployments/<slug:slug>/detectors", monitoring.DetectorStateView.as_view(), name="detector-state"),
    path(
        "deployments/<slug:slug>/detectors/signals",
        monitoring.DetectorSignalListView.as_view(),
        name="detector-signals",
    ),
    path("deployments/<slug:slug>/memory", monitoring.MemoryStatsView.as_view(), name="memory-stats"),
    path("deployments/<slug:slug>/samples", monitoring.ErrorSampleListView.as_view(), name="sample-list"),
    path("deployments/<slug:slug>/promote", releases.PromoteView.as_view(), name="promote"),
    path("deployments/<slug:slug>/rollback", releases.RollbackView.as_view(), name="rollback"),
    path("deployments/<slug:slug>/pause", control.PauseView.as_view(), name="pause"),
    path("deployments/<slug:slug>/resume", control.ResumeView.as_view(), name="resume"),
    path("deployments/<slug:slug>/reset-memory", control.ResetMemoryView.as_view(), name="reset-memory"),
    path("deployments/<slug:slug>/retrain", jobs.RetrainView.as_view(), name="retrain"),
    path("deployments/<slug:slug>/compare", jobs.CompareView.as_view(), name="compare"),
    path("deployments/<slug:slug>/releases", releases.ReleaseListView.as_view(), name="release-list"),
    path("deployments/<slug:slug>/live", releases.LiveAtView.as_view(), name="live-at"),
    path("deployments/<slug:slug>/flip-reports", flip_reports.FlipReportListView.as_view(), name="flip-report-list"),
    path(
        "deployments/<slug:slug>/flip-reports/<int:id>",
        flip_reports.FlipReportDetailView.as_view(),
        name="flip-report-detail",
    ),
    path("tokens", tokens.TokenListView.as_view(), name="token-list"),
    path("tokens/<int:id>/revoke", tokens.TokenRevokeView.as_view(), name="token-revoke"),
    path("jobs", jobs.JobListView.as_view(), name="job-list"),
    path("jobs/<int:id>", jobs.JobDetailView.as_view(), name="job-detail"),
    path("jobs/<int:id>/cancel", jobs.JobCancelView.as_view(), name="job-cancel"),
]
