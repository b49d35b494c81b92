"""Strict fields and base serializers: a request means what its JSON types say, or it is a 400.

DRF's fields are lenient the way HTML forms need: a CharField turns ``123`` into ``"123"``, an
IntegerField takes ``"5"``, a BooleanField takes ``"yes"`` and ``1``, unknown keys are dropped, and
in a query string ``?until=`` reads as if ``until`` were absent. A JSON API documents types, so the
request bodies here take exactly those types (the schema says so, and schemathesis holds us to it),
refuse keys they do not know (a misspelt ``reson`` is not silently ignored), and the query strings
validate a blank value instead of dropping it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import models
from django.http import QueryDict
from rest_framework import serializers


class StrictCharField(serializers.CharField):
    """A string, and only a string (DRF's CharField would store the number 123 as "123")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictSlugField(serializers.SlugField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a string of digits, not a boolean."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return int(super().to_internal_value(data))


class StrictFloatField(serializers.FloatField):
    """A finite JSON number: not a string, not a boolean, not 1e999 (which Python reads as inf)."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float) or not math.isfinite(data):
            self.fail("invalid")
        return float(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """``true`` or ``false``: not ``1``, ``"yes"`` or ``"on"``."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class _KnownKeysOnly(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(set(data) - {name for name, field in self.fields.items() if not field.read_only})
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["unknown or read-only field"]})
        return super().to_internal_value(data)


# A request body: a JSON object with only the keys the serializer knows. (Comments, not docstrings,
# on these bases: drf-spectacular would show a base's docstring as every subclass's description.)
class StrictSerializer(_KnownKeysOnly):
    pass


# A ModelSerializer whose model-derived fields are the strict ones above, refusing unknown keys.
class StrictModelSerializer(_KnownKeysOnly, serializers.ModelSerializer):
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
        models.IntegerField: StrictIntegerField,
        models.BigIntegerField: StrictIntegerField,
        models.PositiveIntegerField: StrictIntegerField,
        models.PositiveSmallIntegerField: StrictIntegerField,
        models.SmallIntegerField: StrictIntegerField,
        models.FloatField: StrictFloatField,
        models.BooleanField: StrictBooleanField,
    }
    serializer_choice_field = StrictChoiceField


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    """``data`` (a body or a query string) validated by ``serializer_class``; a 400 naming the field otherwise."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


# A query string: ``?until=`` is a blank value to validate (a 400), not a missing parameter. DRF
# reads a QueryDict like an HTML form, where an empty field means "not given". The values are taken
# out of it first (every value for list fields, the last one otherwise), so each field sees exactly
# what was sent.
class QuerySerializer(serializers.Serializer):
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, QueryDict):
            plain: dict[str, Any] = {}
            for name, field in self.fields.items():
                if name not in data:
                    continue
                many = isinstance(field, serializers.ListField | serializers.MultipleChoiceField)
                plain[name] = data.getlist(name) if many else data[name]
            data = plain
        return super().to_internal_value(data)


UNTIL_HELP = " Must be later than `since` when both are given (a 400 otherwise)."
UNTIL_AFTER_SINCE = "must be later than since"

# A "+01:00" offset typed into a URL without percent-encoding arrives as " 01:00" (a "+" in a query
# string means a space). Put the plus back rather than refuse the most common way to write a time.
_SPACE_BEFORE_OFFSET = re.compile(r" (\d{2}(?::?\d{2})?)$")


class QueryDateTimeField(serializers.DateTimeField):
    """An ISO-8601 instant from the query string; naive values are read in the server's time zone."""

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str):
            value = _SPACE_BEFORE_OFFSET.sub(r"+\1", value.strip())
        result: datetime = super().to_internal_value(value)
        return result
