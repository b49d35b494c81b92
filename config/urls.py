from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from api.views.docs import DocsView, SchemaView
from dashboard.login import AdminLockoutAuthenticationForm, LockoutLoginView

# The admin's log-in locks out like the dashboard's (dashboard.login).
admin.site.login_form = AdminLockoutAuthenticationForm

urlpatterns = [
    path("", include("dashboard.urls")),
    path("accounts/login/", LockoutLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", DocsView.as_view(url_name="schema"), name="docs"),
]

# JSON on /api/ paths (with the request id), Django's HTML pages elsewhere: api.middleware_errors.
handler400 = "api.middleware_errors.bad_request"
handler403 = "api.middleware_errors.permission_denied"
handler404 = "api.middleware_errors.page_not_found"
handler500 = "api.middleware_errors.server_error"
