from django.urls import path

from dashboard.views import pages

app_name = "dashboard"

urlpatterns = [
    path("", pages.index, name="index"),
    path("deployments/<slug:slug>/", pages.deployment, name="deployment"),
    path("deployments/<slug:slug>/versions/", pages.versions, name="versions"),
    path("jobs/", pages.jobs, name="jobs"),
    path("audit/", pages.audit, name="audit"),
]
