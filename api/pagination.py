"""Limit/offset pages whose parameters are checked: ``?limit=x`` is a 400, not a silent default.

DRF's LimitOffsetPagination ignores a limit or offset it cannot read (and caps a limit over the
maximum without saying so): a client with a typo gets a page it did not ask for. Here a bad value
is a 400 naming the parameter, and the schema states the ranges.
"""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

_INTEGER = re.compile(r"-?[0-9]{1,18}")
MAX_OFFSET = 2**31 - 1


class StrictLimitOffsetPagination(LimitOffsetPagination):
    max_limit = 500

    def get_limit(self, request: Request) -> int:
        value = _integer(request, self.limit_query_param, minimum=1, maximum=self.max_limit)
        return int(self.default_limit or 50) if value is None else value

    def get_offset(self, request: Request) -> int:
        value = _integer(request, self.offset_query_param, minimum=0, maximum=MAX_OFFSET)
        return 0 if value is None else value

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters: list[dict[str, Any]] = super().get_schema_operation_parameters(view)
        bounds = {
            self.limit_query_param: {"minimum": 1, "maximum": self.max_limit, "default": self.default_limit},
            self.offset_query_param: {"minimum": 0, "maximum": MAX_OFFSET},
        }
        for parameter in parameters:
            parameter["schema"] = {**parameter["schema"], **bounds.get(parameter["name"], {})}
        return parameters


class ChartPagination(StrictLimitOffsetPagination):
    """The project's limit/offset pages, with room for a whole chart in one request."""

    max_limit = 5000


def _integer(request: Request, name: str, *, minimum: int, maximum: int | None) -> int | None:
    if name not in request.query_params:
        return None
    raw = request.query_params[name]
    if not _INTEGER.fullmatch(raw):  # int() would also take " 5", "+5" and "1_000"
        raise ValidationError({name: [f"not an integer: {raw[:32]!r}"]})
    value = int(raw)
    if value < minimum:
        raise ValidationError({name: [f"must be at least {minimum}"]})
    if maximum is not None and value > maximum:
        raise ValidationError({name: [f"must be at most {maximum}"]})
    return value
