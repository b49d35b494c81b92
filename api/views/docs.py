"""``/api/schema/`` and ``/api/docs/``: the OpenAPI document and Swagger UI, for viewers and up.

The document describes every endpoint, so it is no more public than the endpoints' reads. An
anonymous API client gets a JSON 401 from the schema; a browser without a session is sent to the
log-in page from the docs page, and comes back to it after logging in.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseBase
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.exceptions import NotAuthenticated

from api.permissions import IsViewer


class SchemaView(SpectacularAPIView):
    permission_classes = [IsViewer]


class DocsView(SpectacularSwaggerView):
    permission_classes = [IsViewer]

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, NotAuthenticated) and "Authorization" not in self.request.headers:
            return redirect_to_login(self.request.get_full_path())
        # Anything else (a user without a role, a bad token) is an API error: JSON, by the middleware.
        return super().handle_exception(exc)
