"""``manage.py ensure_admin``: create (or keep) an admin user for local use and print how to log in."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandParser

from adaptive.file_modes import write_private
from adaptive.services import tokens

TOKEN_NAME = "ensure_admin"


class Command(BaseCommand):
    help = (
        "Create the admin user if missing (password and API token saved under var/, mode 0600) and print "
        "login details and API token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        password_file = Path(settings.VAR_DIR) / "admin-password"
        user_model = get_user_model()
        user = user_model.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = user_model.objects.create_superuser(username=username, email="", password=password)
            write_private(password_file, password + "\n")
        else:
            password = (
                password_file.read_text().strip()
                if password_file.exists()
                else "(unchanged; set it with manage.py changepassword)"
            )
        user.groups.add(Group.objects.get(name="admin"))
        self.stdout.write(f"Log in as {username!r} with password {password!r}")
        self.stdout.write(f"API token for {username!r}: {self._token(user)}")

    def _token(self, user: Any) -> str:
        """The token in VAR_DIR/admin-token while it is the user's and active; else a new one, saved there.

        Only hashes are stored in the database, so a token can be shown again only from this file.
        """
        token_file = Path(settings.VAR_DIR) / "admin-token"
        if token_file.exists():
            raw = token_file.read_text().strip()
            token = tokens.find_active(raw)
            if token is not None and token.user_id == user.pk:
                return raw
        _, raw = tokens.create_token(user=user, name=TOKEN_NAME, actor=None)
        write_private(token_file, raw + "\n")
        return raw
