"""The query parameters of the list endpoints, as django-filter FilterSets.

Each parameter is validated by a DRF field (:class:`QueryFilter`), the same field that documents it
in the OpenAPI schema, so the schema and the server agree on what a value may be. A bad value is a
400 naming the parameter (DjangoFilterBackend raises the form's errors as a ValidationError, which
api.errors shapes); so is a blank one: ``?until=`` is a typo, not "no bound". ``since`` is
inclusive and ``until`` exclusive, on the time column each FilterSet names, and ``until`` must be
later than ``since``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from adaptive.models import AuditEntry, DriftMetric, Job
from adaptive.selectors.deployments import deployment_pk_for_filter
from api.serializers_fields import UNTIL_AFTER_SINCE, UNTIL_HELP, QueryDateTimeField

ORDER_CHOICES = [("asc", "Oldest first"), ("desc", "Newest first")]


class _SerializerFormField(forms.Field):
    """A form field that validates with a DRF field: the same parsing and messages as a serializer's."""

    def __init__(self, *, serializer_field: serializers.Field, many: bool = False, **kwargs: Any) -> None:
        # Repeated parameters (?column=a&column=b) arrive as a list; the others as their last value.
        kwargs.setdefault("widget", forms.MultipleHiddenInput if many else forms.TextInput)
        super().__init__(**kwargs)
        self.serializer_field = serializer_field
        self.many = many

    def clean(self, value: Any) -> Any:
        if value is None or (self.many and value == []):
            return None  # not in the query string; a blank value ("") is validated like any other
        try:
            return self.serializer_field.run_validation(value)
        except serializers.ValidationError as exc:
            # django-filter formats messages with %: keep a literal percent sign literal.
            raise forms.ValidationError([str(m).replace("%", "%%") for m in _messages(exc.detail)]) from exc


def _messages(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [m for value in detail.values() for m in _messages(value)]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value)]
    return [str(detail)]


class QueryFilter(django_filters.Filter):
    """One query parameter: ``serializer_field`` validates it and is its OpenAPI schema.

    ``field_name`` and ``lookup_expr`` say what it filters, as for any django-filter filter;
    ``many`` reads every value of a repeated parameter (the field is then a ListField or a
    MultipleChoiceField, and the lookup usually ``in``).
    """

    field_class = _SerializerFormField

    def __init__(
        self,
        serializer_field: serializers.Field,
        *,
        field_name: str | None = None,
        lookup_expr: str = "exact",
        many: bool = False,
    ) -> None:
        super().__init__(
            field_name=field_name,
            lookup_expr=lookup_expr,
            label=serializer_field.help_text or "",
            serializer_field=serializer_field,
            many=many,
        )
        # drf-spectacular documents the parameter from the DRF field (type, bounds, enum, help).
        extend_schema_field(serializer_field)(self)

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if isinstance(value, set):  # a MultipleChoiceField's values: sorted, for a stable query
            value = sorted(value)
        return super().filter(qs, value)


class OrderFilter(QueryFilter):
    """``order=asc`` (the selector's own order) or ``desc``: ``keys`` reversed, ``then`` kept ascending."""

    def __init__(self, *, keys: Sequence[str], then: Sequence[str] = (), help_text: str) -> None:
        super().__init__(serializers.ChoiceField(choices=ORDER_CHOICES, default="asc", help_text=help_text))
        self.keys = tuple(keys)
        self.then = tuple(then)

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if value != "desc":
            return qs
        return qs.order_by(*(f"-{key}" for key in self.keys), *self.then)


class DeploymentSlugFilter(QueryFilter):
    """``deployment=<slug>``: a 400 naming ``deployment`` when no deployment has that slug."""

    def __init__(self, *, help_text: str) -> None:
        super().__init__(serializers.SlugField(help_text=help_text), field_name="deployment_id")

    def filter(self, qs: QuerySet[Any], value: Any) -> QuerySet[Any]:
        if value in (None, ""):
            return qs
        return qs.filter(deployment_id=deployment_pk_for_filter(value))


def since_filter(column: str, help_text: str) -> QueryFilter:
    return QueryFilter(QueryDateTimeField(help_text=help_text), field_name=column, lookup_expr="gte")


def until_filter(column: str, help_text: str) -> QueryFilter:
    return QueryFilter(QueryDateTimeField(help_text=help_text + UNTIL_HELP), field_name=column, lookup_expr="lt")


def version_filter(column: str, help_text: str) -> QueryFilter:
    return QueryFilter(serializers.IntegerField(min_value=1, help_text=help_text), field_name=column)


class QueryForm(forms.Form):
    """The form of every FilterSet here: an empty or reversed time range is a 400 naming ``until``."""

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        start, end = cleaned.get("since"), cleaned.get("until")
        if start is not None and end is not None and end <= start:
            self.add_error("until", UNTIL_AFTER_SINCE)
        return cleaned


class QueryFilterSet(django_filters.FilterSet):
    class Meta:
        form = QueryForm


# --- monitoring --------------------------------------------------------------------------------------


class WindowFilter(QueryFilterSet):
    since = since_filter("end", "ISO-8601; windows that end at or after this instant.")
    until = until_filter("end", "ISO-8601; windows that end strictly before this instant.")
    version = version_filter("version__number", "Only windows served by this version.")
    order = OrderFilter(keys=("end", "id"), help_text="By window end: `asc` draws a curve, `desc` gives the latest.")


class DriftFilter(QueryFilterSet):
    since = since_filter("window__end", "ISO-8601; windows that end at or after this instant.")
    until = until_filter("window__end", "ISO-8601; windows that end strictly before this instant.")
    version = version_filter("window__version__number", "Only windows served by this version.")
    order = OrderFilter(
        keys=("window__end", "window_id"),
        then=("column", "method"),
        help_text="By window end: `asc` draws a curve, `desc` gives the latest.",
    )
    column = QueryFilter(
        serializers.ListField(
            child=serializers.CharField(max_length=128),
            help_text="Only these columns (repeat the parameter for several).",
        ),
        field_name="column",
        lookup_expr="in",
        many=True,
    )
    column_kind = QueryFilter(serializers.ChoiceField(choices=DriftMetric.ColumnKind.choices), field_name="column_kind")
    level = QueryFilter(
        serializers.MultipleChoiceField(
            choices=DriftMetric.Level.choices, help_text="Only these levels (repeat for several)."
        ),
        field_name="level",
        lookup_expr="in",
        many=True,
    )
    method = QueryFilter(
        serializers.CharField(
            max_length=32, help_text="Only this test: ks, chisquare, wasserstein, jensenshannon, psi."
        ),
        field_name="method",
    )


class ErrorSampleFilter(QueryFilterSet):
    since = since_filter("written_at", "ISO-8601; samples written at or after this instant.")
    until = until_filter("written_at", "ISO-8601; samples written strictly before this instant.")
    version = version_filter("version__number", "Only samples of this version's memory.")
    active = QueryFilter(
        serializers.BooleanField(allow_null=True, help_text="true: in the memory; false: evicted."),
        field_name="active",
    )
    label = QueryFilter(
        serializers.IntegerField(min_value=0, help_text="Only samples with this class index."), field_name="label"
    )


# --- releases, flip reports, jobs, audit ---------------------------------------------------------------


class ReleaseFilter(QueryFilterSet):
    since = since_filter("started_at", "ISO-8601; releases that started at or after this instant.")
    until = until_filter("started_at", "ISO-8601; releases that started strictly before it.")


class FlipReportFilter(QueryFilterSet):
    new = version_filter("new_version__number", "Only reports on this (candidate) version.")
    old = version_filter("old_version__number", "Only reports against this version.")


class JobFilter(QueryFilterSet):
    deployment = DeploymentSlugFilter(
        help_text="Only this deployment's jobs (its slug; 400 if there is no such deployment)."
    )
    kind = QueryFilter(serializers.ChoiceField(choices=Job.Kind.choices), field_name="kind")
    status = QueryFilter(serializers.ChoiceField(choices=Job.Status.choices), field_name="status")


class AuditFilter(QueryFilterSet):
    since = since_filter("created_at", "ISO-8601; only rows at or after this instant.")
    until = until_filter("created_at", "ISO-8601; only rows strictly before this instant.")
    deployment = DeploymentSlugFilter(help_text="Only this deployment's entries (its slug).")
    actor = QueryFilter(
        serializers.CharField(max_length=64, help_text="Only this actor: a username, 'policy' or 'system'."),
        field_name="actor_label",
    )
    action = QueryFilter(serializers.ChoiceField(choices=AuditEntry.Action.choices), field_name="action")
