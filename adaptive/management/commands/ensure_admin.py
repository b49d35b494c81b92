"""``manage.py ensure_admin``: create (or keep) an admin user for local use and print how to log in."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Create the admin user if missing (password saved under var/) and print login details and API token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        password_file = Path(settings.VAR_DIR) / "admin-password"
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = user_model.objects.create_superuser(username=username, email="", password=password)
            password_file.parent.mkdir(parents=True, exist_ok=True)
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        else:
            password = (
                password_file.read_text().strip()
                if password_file.exists()
                else "(unchanged; set it with manage.py changepassword)"
            )
        user.groups.add(Group.objects.get(name="admin"))
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(f"Log in as {username!r} with password {password!r}")
        self.stdout.write(f"API token for {username!r}: {token.key}")
