"""A per-process memory of the credentials the API found valid: ingestion keys and users' tokens.

Finding a key or a token costs a database query, and at hundreds of single-row predict calls per
second that query was an eighth of each request. So each process remembers a credential it found
valid for ``AUTH_CACHE_SECONDS`` (default 5; 0 turns the cache off):

- a key or token revoked, a user deactivated or a role changed in *another* process takes effect in
  this one within that time;
- in the process that made the change it takes effect at once: the revoke services forget the
  entry, and saving a key, a token or a user (or changing a user's groups) through the ORM empties
  the cache (adaptive.apps connects the signals);
- failures are never remembered: a wrong guess is looked up, and counted (api.middleware), every time;
- entries are keyed by the SHA-256 of the secret (what the database stores), never by the secret.

The clock is ``clock()`` in this module, so that tests can move time forward without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from django.conf import settings

# Entries a process keeps at most; the oldest go first.
_MAX_ENTRIES = 10_000


def clock() -> float:
    return time.monotonic()


class CredentialCache:
    """Values by the hash of their secret, each valid for AUTH_CACHE_SECONDS after it was stored."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> Any | None:
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if clock() >= entry[0]:
                del self._entries[digest]
                return None
            return entry[1]

    def add(self, digest: str, value: Any) -> None:
        """Remember ``value`` unless a live entry exists: an entry is never extended, so whatever is
        remembered is looked up again within AUTH_CACHE_SECONDS of its lookup."""
        seconds = settings.AUTH_CACHE_SECONDS
        if seconds <= 0:
            return
        with self._lock:
            now = clock()
            entry = self._entries.get(digest)
            if entry is not None and now < entry[0]:
                return
            self._entries[digest] = (now + seconds, value)
            self._entries.move_to_end(digest)
            while len(self._entries) > _MAX_ENTRIES:
                self._entries.popitem(last=False)

    def forget(self, digest: str) -> None:
        with self._lock:
            self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


ingestion_keys = CredentialCache()
api_tokens = CredentialCache()


def clear_all(**_: Any) -> None:
    """Forget every remembered credential (a signal receiver: a key, token or user changed here)."""
    ingestion_keys.clear()
    api_tokens.clear()
