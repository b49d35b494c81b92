"""``manage.py create_token <username> [--name NAME] [--expires-in-days N]``: print a new API token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from adaptive.errors import Conflict, InvalidInput
from adaptive.services import tokens


class Command(BaseCommand):
    help = (
        "Create an API token for a user and print it (once: only its hash is stored). "
        "Send it as 'Authorization: Token <token>'; revoke it with POST /api/v1/tokens/<id>/revoke."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="manage.py create_token", help="what the token is for")
        parser.add_argument(
            "--expires-in-days", type=int, default=None, help=f"1 to {tokens.MAX_EXPIRY.days}; default: no expiry"
        )

    def handle(self, *args: Any, username: str, name: str, expires_in_days: int | None, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        expires_at = None
        if expires_in_days is not None:
            if not 1 <= expires_in_days <= tokens.MAX_EXPIRY.days:
                raise CommandError(f"--expires-in-days must be 1 to {tokens.MAX_EXPIRY.days}")
            expires_at = timezone.now() + timedelta(days=expires_in_days)
        try:
            token, raw = tokens.create_token(user=user, name=name, expires_at=expires_at, actor=None)
        except (InvalidInput, Conflict) as exc:
            raise CommandError(str(exc)) from exc
        expiry = f"expires {token.expires_at.isoformat()}" if token.expires_at else "no expiry"
        self.stderr.write(f"token #{token.pk} {token.name!r} for {username!r} ({expiry}); shown once:")
        self.stdout.write(raw)
