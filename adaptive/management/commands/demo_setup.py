"""``manage.py demo_setup [--fast]``: the flights deployment, its first version, key and token files, the replay.

``bin/up`` runs it after ``ensure_admin`` and before starting the servers; it is idempotent (a second
run reuses the deployment, the version and the key, and does not retrain). See ``adaptive.demo``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from adaptive import demo
from adaptive.errors import Conflict


class Command(BaseCommand):
    help = (
        "Create (or reuse) the demo deployment 'flights' (retrain policy auto), train its first version, "
        "write an ingestion key, an operator's API token and a replay file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--slug", default=demo.DEMO_SLUG, help="deployment slug (default %(default)s)")
        parser.add_argument(
            "--train-months",
            type=int,
            default=demo.DEFAULT_TRAIN_MONTHS,
            help="train on the first N months of 2013, replay the rest (default %(default)s; ignored once trained)",
        )
        parser.add_argument(
            "--fast", action="store_true", help=f"a shortened replay: about {demo.FAST_ROWS} events over the year"
        )
        parser.add_argument("--fast-rows", type=int, default=demo.FAST_ROWS, help="replayed events with --fast")
        parser.add_argument(
            "--token-user",
            default=demo.TOKEN_USER,
            help="operator or admin whose API token is written for the replay's retrain request "
            "(default %(default)s; an empty value writes none)",
        )

    def handle(
        self, *args: Any, slug: str, train_months: int, fast: bool, fast_rows: int, token_user: str, **options: Any
    ) -> None:
        if fast_rows < 1:
            raise CommandError("--fast-rows must be at least 1")
        try:
            result = demo.setup_demo(
                slug=slug,
                train_months=train_months,
                fast=fast,
                fast_rows=fast_rows,
                token_user=token_user or None,
                log=self.stdout.write,
            )
        except (Conflict, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"demo ready: deployment {result.deployment.slug!r} v{result.version.number}, "
            f"{result.replay_rows} events in {result.replay_file}, key in {result.key_file}"
        )
