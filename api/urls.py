from django.urls import path

from api.views import health, ingest, registry

app_name = "api"

urlpatterns = [
    path("health", health.HealthView.as_view(), name="health"),
    path("deployments", registry.DeploymentListView.as_view(), name="deployment-list"),
    path("deployments/<slug:slug>", registry.DeploymentDetailView.as_view(), name="deployment-detail"),
    path("deployments/<slug:slug>/versions", registry.VersionListView.as_view(), name="version-list"),
    path("deployments/<slug:slug>/versions/<int:number>", registry.VersionDetailView.as_view(), name="version-detail"),
    path("deployments/<slug:slug>/keys", registry.IngestionKeyListView.as_view(), name="key-list"),
    path("deployments/<slug:slug>/predict", ingest.PredictView.as_view(), name="predict"),
    path("deployments/<slug:slug>/feedback", ingest.FeedbackView.as_view(), name="feedback"),
]
