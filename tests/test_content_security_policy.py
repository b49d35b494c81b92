"""The Content-Security-Policy header: strict on the dashboard, a nonce for Swagger UI, none on JSON.

The browser's side (pages render with no violation) is tests/e2e/test_csp.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.test import Client

from tests.factories import UserFactory

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _directives(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";"))}


def _viewer(client: Client) -> Client:
    client.force_login(UserFactory.create(role="viewer"))
    return client


def test_dashboard_pages_allow_only_their_own_scripts_and_styles(client: Client, db: None) -> None:
    for response in (client.get("/accounts/login/"), _viewer(client).get("/")):
        assert response.status_code == 200
        policy = _directives(response)
        assert policy["script-src"] == ["'self'"]
        assert policy["style-src"] == ["'self'"]
        assert policy["object-src"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]


def test_swagger_ui_runs_its_inline_code_by_a_fresh_nonce(client: Client, db: None) -> None:
    _viewer(client)
    first, second = client.get("/api/docs/"), client.get("/api/docs/")

    assert first.status_code == 200
    nonce = re.search(r"'nonce-([^']+)'", first["Content-Security-Policy"])
    assert nonce is not None
    html = first.content.decode()
    inline = re.findall(r"<(script|style)(?![^>]*\ssrc=)([^>]*)>", html)
    assert inline, html
    assert all(f'nonce="{nonce.group(1)}"' in attributes for _, attributes in inline)
    assert "'unsafe-inline'" not in _directives(first)["script-src"]
    assert nonce.group(1) not in second["Content-Security-Policy"]


def test_json_answers_carry_no_policy(client: Client, db: None) -> None:
    response = _viewer(client).get("/api/v1/deployments")

    assert response.status_code == 200
    assert "Content-Security-Policy" not in response


def test_templates_have_no_inline_script_style_or_handler() -> None:
    # What script-src/style-src 'self' would refuse. json_script's <script type="application/json">
    # is data, rendered by a tag, and not in the template text. Swagger UI's override is the exception
    # that carries a nonce.
    offending = []
    for path in TEMPLATES.rglob("*.html"):
        if path.parts[-2] == "drf_spectacular":
            continue
        text = path.read_text()
        for pattern in (r"<script(?![^>]*\ssrc=)[^>]*>", r"<style\b", r"\sstyle=", r"\son[a-z]+="):
            offending += [f"{path.relative_to(TEMPLATES)}: {m.group(0)}" for m in re.finditer(pattern, text)]

    assert not offending
