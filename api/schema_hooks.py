"""drf-spectacular post-processing: the answers every operation can give, and closed request bodies.

Some answers do not come from a view's own logic, so no view documents them: a 401 for bad
credentials, 403 for a missing role, 429 once an address has failed authentication too often, 404
for a path parameter that names nothing, 400 for a query string or body that does not validate,
413 for a body over the limit and 415 for a body that is not JSON. They are added here, with the
error shape, wherever they apply. JSON request bodies refuse keys they do not know
(api.serializers_fields.StrictSerializer), so their objects are marked ``additionalProperties:
false``; and DRF's string fields refuse a NUL character (PostgreSQL cannot store one), so the free
strings of request bodies and query strings say so with a pattern.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ERROR_REF = {"$ref": "#/components/schemas/Error"}
NO_NUL = "^[^\\x00]*$"
METHODS = {"get", "put", "post", "patch", "delete"}
DESCRIPTIONS = {
    "400": "Invalid parameters or body: `field` names the first one at fault.",
    "401": "Missing, wrong, expired or revoked credentials.",
    "403": "Authenticated, but the role (or the ingestion key's deployment) does not allow this.",
    "404": "A path parameter names nothing that exists.",
    "413": "The body is over MAX_REQUEST_BYTES.",
    "415": "The body is not of a documented media type.",
    "429": "Too many failed authentications from this address (or requests with this ingestion key): "
    "retry after Retry-After seconds.",
}


def document_common_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    components = result.get("components", {}).get("schemas", {})
    closed: set[str] = set()
    for operation in _operations(result):
        responses = operation.setdefault("responses", {})
        for code in _common_codes(operation):
            responses.setdefault(code, {"description": DESCRIPTIONS[code], "content": _json(ERROR_REF)})
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query":
                _forbid_nul(parameter.get("schema"))
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            closed |= set(_referenced(body["schema"], components))
    for name in closed:
        if components[name].get("type") == "object":
            components[name]["additionalProperties"] = False
        for prop in components[name].get("properties", {}).values():
            _forbid_nul(prop)
            _forbid_nul(prop.get("items"))
    return result


def _forbid_nul(schema: Any) -> None:
    """A free string (no format, enum or pattern of its own) gets the no-NUL pattern."""
    if isinstance(schema, dict) and schema.get("type") == "string" and not {"format", "enum", "pattern"} & set(schema):
        schema["pattern"] = NO_NUL


def _operations(result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method in METHODS:
                yield operation


def _common_codes(operation: dict[str, Any]) -> list[str]:
    parameters = operation.get("parameters", [])
    public = {} in operation.get("security", [])  # anonymous callers welcome (health)
    codes = [] if public else ["401", "403", "429"]
    if any(p.get("in") == "path" for p in parameters):
        codes.append("404")
    if any(p.get("in") == "query" for p in parameters) or "requestBody" in operation:
        codes.append("400")
    if "requestBody" in operation:
        codes += ["413", "415"]
    return codes


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _referenced(schema: Any, components: dict[str, Any], seen: set[str] | None = None) -> Iterator[str]:
    """Names of the components a schema refers to, nested ones included."""
    seen = set() if seen is None else seen
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                yield name
                yield from _referenced(components.get(name), components, seen)
        for value in schema.values():
            yield from _referenced(value, components, seen)
    elif isinstance(schema, list):
        for value in schema:
            yield from _referenced(value, components, seen)
