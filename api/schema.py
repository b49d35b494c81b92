"""OpenAPI extensions: describe the ingestion-key and token schemes so the docs show how to authenticate."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class IngestionKeyScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.IngestionKeyAuthentication"
    name = "ingestionKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Key <key>`: an ingestion key, scoped to one deployment (predict and feedback only).",
        }


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "`Token <token>`: a user's API token, with that user's role. Create one with "
                "`POST /api/v1/tokens` (or `manage.py create_token`); it is shown once, only its hash is "
                "stored. A token may expire (`expires_in_days` / `expires_at`) and is revoked with "
                "`POST /api/v1/tokens/{id}/revoke`; a revoked or expired token gets a 401 that says so."
            ),
        }
