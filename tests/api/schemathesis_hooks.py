"""schemathesis hooks for tests/api/test_schemathesis.py (loaded by the schemathesis process).

One check replaces schemathesis's ``positive_data_acceptance``: a schema-valid request must be
accepted, unless the 400 names a field whose rule OpenAPI cannot state and whose description
states it in words: a range (``until`` after ``since``), a reference to something that must exist
(a version number, a deployment slug in a filter), a field required by another (``key_dim`` for an
external deployment), or a row checked against the deployment's own feature schema and classes.
Every other 400 to a schema-valid request is a disagreement between the schema and the server,
and fails the run as before.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

RANGE = frozenset({"until"})
# (method, path template) -> fields whose 400 is a documented rule beyond the schema.
RULES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/v1/audit"): RANGE | {"deployment"},
    ("GET", "/api/v1/jobs"): frozenset({"deployment"}),
    ("GET", "/api/v1/deployments/{slug}/curve"): RANGE,
    ("GET", "/api/v1/deployments/{slug}/windows"): RANGE,
    ("GET", "/api/v1/deployments/{slug}/drift"): RANGE,
    ("GET", "/api/v1/deployments/{slug}/detectors/signals"): RANGE,
    ("GET", "/api/v1/deployments/{slug}/samples"): RANGE,
    ("GET", "/api/v1/deployments/{slug}/releases"): RANGE,
    ("GET", "/api/v1/deployments/{slug}/detectors"): frozenset({"version"}),
    ("GET", "/api/v1/deployments/{slug}/memory"): frozenset({"version"}),
    ("POST", "/api/v1/deployments"): frozenset({"feature_schema", "classes", "key_dim"}),
    ("POST", "/api/v1/deployments/{slug}/promote"): frozenset({"version"}),
    ("POST", "/api/v1/deployments/{slug}/rollback"): frozenset({"version"}),
    ("POST", "/api/v1/deployments/{slug}/compare"): frozenset({"old", "new"}),
    ("POST", "/api/v1/deployments/{slug}/versions"): frozenset({"weights", "spec"}),
    # A rate like "20/min", its period at most a day.
    ("POST", "/api/v1/deployments/{slug}/keys"): frozenset({"rate"}),
    # In the future, at most ten years away, and not together with expires_in_days.
    ("POST", "/api/v1/tokens"): frozenset({"expires_at", "expires_in_days"}),
    ("GET", "/api/v1/tokens"): frozenset({"user"}),
}
# Every request body in the schema is closed (additionalProperties: false). schemathesis's stateful
# phase may still copy a field of an earlier answer into a body (an error's `errors`): the server's
# refusal of that key is right, and the request was not schema-valid whatever the case says.
UNKNOWN_KEY = ": unknown or read-only field"
# Strings are trimmed, and a required one may not be only whitespace (the descriptions say so): JSON
# Schema's \s and Python's str.strip disagree on what whitespace is, so no pattern can say it.
BLANK = ": This field may not be blank."
# Predict, compensate and feedback check each row against the deployment (its features, classes,
# key length): a 400 that names a row (``index``) states such a rule.
ROW_CHECKED = frozenset(
    {
        ("POST", "/api/v1/deployments/{slug}/predict"),
        ("POST", "/api/v1/deployments/{slug}/compensate"),
        ("POST", "/api/v1/deployments/{slug}/feedback"),
    }
)


def states_a_rule(method: str, path: str, body: Any) -> bool:
    if not isinstance(body, dict) or body.get("error") != "invalid":
        return False
    if (method, path) in ROW_CHECKED and "index" in body:
        return True
    if str(body.get("detail", "")).endswith((UNKNOWN_KEY, BLANK)):
        return True
    return body.get("field") in RULES.get((method, path), frozenset())


@schemathesis.check
def positive_data_acceptance_beyond_the_schema(ctx: Any, response: Any, case: Any) -> bool | None:
    try:
        return positive_data_acceptance(ctx, response, case)
    except AssertionError:
        if response.status_code != 400:
            raise
        try:
            body = json.loads(response.content)
        except ValueError:
            raise AssertionError("a 400 that is not JSON") from None
        if states_a_rule(case.method.upper(), case.operation.path, body):
            return None
        raise
