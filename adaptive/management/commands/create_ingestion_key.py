"""``manage.py create_ingestion_key SLUG NAME``: prints a key that may predict and send feedback."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from adaptive.models import Deployment
from adaptive.services.keys import create_key


class Command(BaseCommand):
    help = "Create an ingestion key scoped to one deployment and print it (shown once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("name")

    def handle(self, *args: Any, slug: str, name: str, **options: Any) -> None:
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise CommandError(f"no deployment {slug!r}")
        _, raw = create_key(deployment=deployment, name=name, actor=None)
        self.stdout.write(raw)
