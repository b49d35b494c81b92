"""The deployment as predict, compensate and feedback read it: one query on small columns per request.

Each request reads, by slug, the few columns of the deployment that the hot path uses and another
process may change at any moment (serving mode, live version, memory revision and epoch, the
compensation and memory settings), with the live version's weights digest joined in. What never
changes once written is read once per process and kept:

- the deployment's classes and feature schema (fixed when it is created), found again by
  (id, created_at);
- the live version's architecture, config, preprocessing, key mean and weights path (a version is
  immutable: a retrain makes a new one), found again by the deployment's key, its id and weights
  digest.

The keys hold more than the id because SQLite hands the ids of rolled-back rows out again. The
version's large JSON columns (training profile, metrics, importance, calibration) are never read
here: loading them was a fifth of a single-row request's time.

The query is compiled once per thread: building it through the ORM cost more than running it.
Columns left out are deferred, so code that reads one anyway still gets it (with a query).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.sql.compiler import SQLCompiler
from django.http import Http404

from adaptive.models import Deployment, ModelVersion

# Read on every request: what the hot path uses and another process may change. Every other column
# is deferred (reading one costs a query: tests/api/test_hot_path.py counts them). Columns cost on
# both ends: all thirty of them made this query twice as slow as these.
_FRESH_FIELDS = (
    "id",
    "slug",
    "task",
    "serving",
    "key_dim",
    "live_version",
    "compensation_enabled",
    "compensation_gate",
    "compensation_strength",
    "compensation_lambda",
    "compensation_gamma",
    "compensation_tau",
    "memory_kind",
    "memory_capacity",
    "memory_k",
    "memory_revision",
    "memory_epoch",
    "created_at",
)
# Read once per process (see the module).
_FIXED_FIELDS = ("classes", "feature_schema")
_VERSION_FIELDS = (
    "id",
    "deployment_id",
    "number",
    "architecture",
    "config",
    "preprocessing",
    "key_mean",
    "threshold",
    "weights_path",
    "weights_sha256",
    "created_at",
)
_MAX_DEPLOYMENTS = 256
_MAX_VERSIONS = 64
# Stands for the slug while the query is compiled.
_SLUG = "\x00slug"


@dataclass(frozen=True)
class _Query:
    sql: str
    attnames: list[str]
    compiler: SQLCompiler
    converters: dict[int, Any]


_local = threading.local()
_lock = threading.Lock()
_fixed: OrderedDict[tuple[int, datetime], tuple[Any, Any]] = OrderedDict()
_versions: OrderedDict[tuple[int, datetime, int, str], ModelVersion] = OrderedDict()


def serving_deployment(slug: str, using: str = DEFAULT_DB_ALIAS) -> Deployment:
    """The deployment with this slug, its live version attached; ``Http404`` naming the slug if none."""
    query = _query(using)
    with connections[using].cursor() as cursor:
        cursor.execute(query.sql, [slug])
        row = cursor.fetchone()
    if row is None:
        raise Http404(f"no deployment {slug!r}")
    if query.converters:
        row = next(iter(query.compiler.apply_converters([row], query.converters)))
    n = len(query.attnames)
    deployment = Deployment.from_db(using, query.attnames, list(row[:n]))
    deployment.classes, deployment.feature_schema = _fixed_parts(deployment)
    version_sha256 = row[n]
    if deployment.live_version_id is not None and version_sha256 is not None:
        deployment.live_version = _version(deployment, deployment.live_version_id, version_sha256)
    return deployment


def _query(using: str) -> _Query:
    queries: dict[str, _Query] = getattr(_local, "queries", None) or {}
    _local.queries = queries
    if using not in queries:
        fields = [f for f in Deployment._meta.concrete_fields if f.name in _FRESH_FIELDS]
        attnames = [f.attname for f in fields]
        rows = (
            Deployment.objects.using(using)
            .filter(slug=_SLUG)
            .order_by()
            .values_list(*attnames, "live_version__weights_sha256")
        )
        compiler = rows.query.get_compiler(using)
        sql, params = compiler.as_sql()
        if list(params) != [_SLUG]:
            raise AssertionError(f"unexpected parameters in the serving query: {params!r}")
        converters = compiler.get_converters([column for column, _, _ in compiler.select])
        queries[using] = _Query(sql, attnames, compiler, converters)
    return queries[using]


def _fixed_parts(deployment: Deployment) -> tuple[Any, Any]:
    key = (deployment.pk, deployment.created_at)
    with _lock:
        parts = _fixed.get(key)
        if parts is not None:
            _fixed.move_to_end(key)
            return parts
    row = Deployment.objects.filter(pk=deployment.pk).values_list(*_FIXED_FIELDS).get()
    parts = (row[0], row[1])
    with _lock:
        _fixed[key] = parts
        while len(_fixed) > _MAX_DEPLOYMENTS:
            _fixed.popitem(last=False)
    return parts


def _version(deployment: Deployment, version_id: int, sha256: str) -> ModelVersion:
    key = (deployment.pk, deployment.created_at, version_id, sha256)
    with _lock:
        version = _versions.get(key)
        if version is not None:
            _versions.move_to_end(key)
            return version
    version = ModelVersion.objects.only(*_VERSION_FIELDS).get(pk=version_id)
    if version.weights_sha256 == sha256:
        with _lock:
            _versions[key] = version
            while len(_versions) > _MAX_VERSIONS:
                _versions.popitem(last=False)
    return version
