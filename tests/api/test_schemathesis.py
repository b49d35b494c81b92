"""Every documented operation, fuzzed against the live server: the schema tells the truth.

schemathesis reads ``/api/schema/`` (as an admin) and sends each operation a bounded number of
generated requests, schema-valid and schema-invalid ones, with a fixed seed in deterministic mode
(the same cases on every run), then runs all of its checks on every answer: no 5xx, documented
status codes, content types, headers and bodies, valid data accepted, invalid data refused,
authentication not ignored. The path's ``slug`` is always the committed deployment's, so the cases
reach real data rather than stopping at a 404; the destructive actions (pause, reset-memory,
rollback, retrain, revoke, ...) run on it too. No Celery worker runs: actions that queue work still
answer, the broker keeps the message.

It runs the schemathesis command line (what a developer reruns by hand, see the README) against
pytest-django's live server in this process, so its failures print as schemathesis reports them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rest_framework.test import APIClient

from adaptive.services.tokens import create_token
from tests.api.conftest import CommittedDeployment
from tests.factories import DriftMetricFactory, WindowFactory

SEED = 20240601
# Test cases per operation in the fuzzing phase; the coverage phase adds its own. 3,640 cases in
# 222 s (SQLite) and 229 s (PostgreSQL) on a shared 2-core machine.
MAX_EXAMPLES = 20
TIMEOUT_S = 600
# A rule-aware replacement for the positive_data_acceptance check (see the module).
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")


def _config(slug: str, spare_token_id: int, window_id: int) -> str:
    # Fixed seed and deterministic generation: a failure here is a failure on every run. Token
    # revocation always aims at a spare token: any other id could be the run's own credential. The
    # window detail reads a window that exists (a random id is only ever a 404).
    return "\n".join(
        [
            f"seed = {SEED}",
            f'hooks = "{HOOKS}"',
            # No memory of earlier runs (it reorders and replays cases): every run the same.
            "cache.enabled = false",
            "[generation]",
            "deterministic = true",
            'database = "none"',
            f"max-examples = {MAX_EXAMPLES}",
            "[parameters]",
            f'"path.slug" = "{slug}"',
            "[[operations]]",
            'include-path = "/api/v1/tokens/{id}/revoke"',
            f'parameters = {{ "path.id" = {spare_token_id} }}',
            "phases.stateful.enabled = false",
            "[[operations]]",
            'include-path = "/api/v1/deployments/{slug}/windows/{id}"',
            f'parameters = {{ "path.id" = {window_id} }}',
            "",
        ]
    )


def test_every_operation_conforms_to_the_schema(
    live_server: Any,
    committed_deployment: CommittedDeployment,
    admin_client: APIClient,
    tmp_path: Path,
    settings: Any,
) -> None:
    # schemathesis sends wrong credentials on purpose (its ignored_auth check): the throttle on
    # failed authentications (tested in its own file) would block the run's next requests.
    settings.AUTH_FAILURES_PER_IP = ""
    # The admin's "Token <key>" header, as the shared fixture's client sends it.
    authorization = admin_client._credentials["HTTP_AUTHORIZATION"]
    config = tmp_path / "schemathesis.toml"
    spare, _ = create_token(user=admin_client.user, name="spare", actor=None)
    window = DriftMetricFactory.create(window=WindowFactory.create(deployment=committed_deployment.deployment)).window
    config.write_text(_config(committed_deployment.deployment.slug, spare.pk, window.pk))
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{live_server.url}/api/schema/?format=json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--header",
        f"Authorization: {authorization}",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path / "report"),
    ]
    started = time.perf_counter()
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,  # whatever it writes stays out of the repository
    )
    took = time.perf_counter() - started
    output = result.stdout + result.stderr
    cases = re.search(r"(\d+) generated", output)
    summary = f"schemathesis: {cases.group(1) if cases else '?'} cases in {took:.0f} s"
    print(summary)
    assert result.returncode == 0, f"{summary}\n{output}"
