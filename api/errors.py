"""One error shape for the API: ``{"error": code, "field": ..., "index": ..., "detail": ..., "request_id": ...}``.

Domain errors become 400/409, a lost database connection a retryable 503, an oversize body a 413;
nothing becomes a 500 that the client could have avoided. Database and exception text stays in the
server log, under the request id the client gets (api.middleware_errors).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, HttpResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from adaptive.errors import Conflict, InvalidInput

log = logging.getLogger(__name__)


def invalid_input_body(exc: InvalidInput) -> dict[str, Any]:
    body: dict[str, Any] = {"error": "invalid", "field": exc.field, "detail": str(exc)}
    if exc.index is not None:
        body["index"] = exc.index
    return body


def json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(orjson.dumps(body), status=status_code, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    request = context.get("request")
    response = _error_response(exc, context)
    if response is not None and isinstance(response.data, dict) and request is not None:
        response.data["request_id"] = request_id_of(request)
    return response


def request_id_of(request: Any) -> str:
    """The request's id (api.middleware_errors.RequestIdMiddleware sets it); one is made if it has none."""
    request = getattr(request, "_request", request)  # a DRF Request wraps Django's
    request_id = getattr(request, "request_id", None)
    if not isinstance(request_id, str):
        request_id = uuid.uuid4().hex
        request.request_id = request_id
    return request_id


def _error_response(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Http404):
        # The lookups (adaptive.selectors) raise Django's 404, which the dashboard shows as a page;
        # here it is DRF's, with its code and the lookup's message.
        exc = exceptions.NotFound(*exc.args)
    if isinstance(exc, InvalidInput):
        return Response(invalid_input_body(exc), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, Conflict):
        return Response({"error": "conflict", "detail": str(exc)}, status=status.HTTP_409_CONFLICT)
    if isinstance(exc, RequestDataTooBig):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return Response(
            {"error": "too_large", "detail": f"the request body is over the limit of {limit} bytes"},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, DataError):
        # A value the validators let through but the database refuses (e.g. a NUL character in a
        # string for PostgreSQL). The transaction rolled back: nothing was written. The database's
        # message quotes SQL and values: it goes to the log, the client gets the request id.
        request = context.get("request")
        request_id = request_id_of(request) if request is not None else "-"
        log.warning("the database refused a value (request id %s): %s", request_id, exc)
        return Response(
            {
                "error": "invalid",
                "field": "body",
                "detail": f"the database refused a value; the server log has it under request id {request_id}",
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, OperationalError | InterfaceError):
        log.warning("database unavailable: %s", exc)
        return Response(
            {"error": "unavailable", "detail": "database unavailable; nothing was written, retry the request"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        field, messages = next(iter(response.data.items()), ("non_field_errors", ["invalid"]))
        first = messages[0] if isinstance(messages, list) and messages else messages
        response.data = {"error": "invalid", "field": field, "detail": f"{field}: {first}", "errors": response.data}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": getattr(exc, "default_code", "error"), "detail": str(response.data["detail"])}
    return response
