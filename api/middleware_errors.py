"""Request ids, and JSON errors on every /api/ path whatever raised them.

Every response carries ``X-Request-ID``: the client's own when it sent a sane one (a caller's trace
id follows the request into our log), a fresh one otherwise. An error on an /api/ path answers
``{"error", "detail", "request_id"}`` in JSON, also where no API view ran: an unmatched path (the
URL resolver, before any view), a body over ``MAX_REQUEST_BYTES`` (413), an exception nothing
handled (500). The client gets the request id, never the exception: the log has both. The
dashboard keeps Django's HTML pages.

``handler400``/``handler404``/``handler403``/``handler500`` in config.urls call the views at the
bottom; the middleware's last step turns any other non-JSON error answer on an /api/ path (DEBUG's
technical pages, a renderer that is not JSON) into the same shape.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.views import defaults

from api.errors import json_response, request_id_of

log = logging.getLogger(__name__)

API_PREFIX = "/api/"
REQUEST_ID_HEADER = "X-Request-ID"
# What we echo back and write into the log: a uuid, a W3C trace id, a short token. Anything else
# (too long, spaces, control characters) is replaced, so a header cannot forge log lines.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Error answers that already are what an API client reads.
_JSON_TYPES = ("application/json", "application/problem+json")
# Headers of an error answer that tell the client what to do next: kept when the body is rewritten.
_KEPT_HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def error_response(
    request: HttpRequest, status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> HttpResponse:
    body = {"error": error, "detail": detail, "request_id": request_id_of(request)}
    return json_response(body, status_code=status, headers=headers)


def too_large(request: HttpRequest) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(request, 413, "too_large", f"the request body is over the limit of {limit} bytes")


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class RequestIdMiddleware:
    """First in ``MIDDLEWARE``: ids every request and answers API errors in JSON (see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        sent = request.headers.get(REQUEST_ID_HEADER, "")
        request.request_id = sent if _SANE_REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex  # type: ignore[attr-defined]
        response = self._over_limit(request) or self.get_response(request)
        if is_api(request) and response.status_code >= 400 and not _is_json(response):
            response = _as_json(request, response)
        response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
        return response

    def _over_limit(self, request: HttpRequest) -> HttpResponse | None:
        # Django checks the limit only when request.body or request.POST is read, and DRF's JSON
        # parser reads the stream directly: refuse a declared oversize body before anything reads it.
        # Multipart uploads are exempt: their files have their own limit (MAX_WEIGHTS_BYTES), and
        # Django counts their other fields against this one.
        if not is_api(request) or request.content_type == "multipart/form-data":
            return None
        if _declared_length(request) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            return too_large(request)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """An exception out of a view: a 413 for an oversize body, a logged 500 for anything unknown."""
        if not is_api(request):
            return None
        if isinstance(exception, RequestDataTooBig):
            return too_large(request)
        if isinstance(exception, Http404 | PermissionDenied | SuspiciousOperation | BadRequest):
            return None  # Django answers these through the handlers below
        log.error(
            "unhandled error on %s %s (request id %s)",
            request.method,
            request.path,
            request_id_of(request),
            exc_info=exception,
        )
        return server_error_response(request)


def server_error_response(request: HttpRequest) -> HttpResponse:
    detail = f"internal error; the server log has the details under request id {request_id_of(request)}"
    return error_response(request, 500, "server_error", detail)


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() in _JSON_TYPES


def _as_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    data = getattr(response, "data", None)  # a DRF answer rendered as something else (YAML, HTML)
    status = response.status_code
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        body = {**data, "request_id": request_id_of(request)}
        answer = json_response(body, status_code=status)
    else:
        phrase = _phrase(status)
        answer = error_response(request, status, phrase.lower().replace(" ", "_"), phrase)
    for name in _KEPT_HEADERS:
        if name in response:
            answer[name] = response[name]
    return answer


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# --- handler400/403/404/500 (config.urls) -----------------------------------------------------------


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return too_large(request)
    log.warning("bad request on %s (request id %s): %r", request.path, request_id_of(request), exception)
    return error_response(request, 400, "invalid", "the request could not be read")


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.permission_denied(request, exception)
    return error_response(request, 403, "permission_denied", "you may not do this")


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if not is_api(request):
        return defaults.page_not_found(request, exception)
    return error_response(request, 404, "not_found", f"no API endpoint at {request.path}")


def server_error(request: HttpRequest) -> HttpResponse:
    if not is_api(request):
        return defaults.server_error(request)
    # Django's own log line ("Internal Server Error: <path>", with the traceback) comes right after.
    log.error("server error on %s %s (request id %s)", request.method, request.path, request_id_of(request))
    return server_error_response(request)
