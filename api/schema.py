"""OpenAPI extensions: describe the ingestion-key scheme so the docs show how to authenticate."""

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
