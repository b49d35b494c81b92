"""Sending task messages after a commit without turning a broker outage into a failed request.

The Job row is the record of the work; the message only wakes a worker. When the broker is down
the row is already committed, so the request that queued it has succeeded: the failure is logged
and the beat sweepers re-send messages of jobs queued for too long.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

log = logging.getLogger(__name__)


def send_on_commit(task: Any, args: tuple[Any, ...], **options: Any) -> None:
    """``task.apply_async(args, **options)`` once the current transaction commits; never raises."""

    def send() -> None:
        try:
            task.apply_async(args, **options)
        except Exception:  # kombu raises several types for an unreachable broker
            log.exception("could not send %s%r; the sweeper will re-send it", task.name, args)

    transaction.on_commit(send)
