"""The embedded set-up's cache: Django's file-based cache with ``add`` and ``incr`` made atomic.

Every web worker (gunicorn runs several), the Celery processes and the tests share the throttle
counters through this directory without a server. Django's FileBasedCache writes each entry
atomically (a temporary file renamed over the old one) but implements ``add`` as "has_key, then set"
and ``incr`` as "get, then set with the default timeout": two workers counting the same failure at
once lose one count, and an ``incr`` would stretch a counter's life to the default timeout. Both
run here under one exclusive ``flock`` on a lock file in the cache directory, and ``incr`` keeps the
entry's expiry, as Redis's INCR does.

Entries are pickles, like every Django cache backend's; the directory is created 0700 and the files
0600 (``tempfile.mkstemp``), so only the control room's own user can write what is unpickled.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.filebased import FileBasedCache
from django.core.files import locks


class LockingFileBasedCache(FileBasedCache):
    # Not *.djcache: clear() and culling leave the lock file alone.
    lock_name = "atomic.lock"
    # FileBasedCache's private members used here; django-stubs does not declare them.
    _dir: str
    _createdir: Callable[[], None]
    _key_to_file: Callable[..., str]
    _is_expired: Callable[[BinaryIO], bool]

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        self._createdir()
        with open(os.path.join(self._dir, self.lock_name), "ab") as lock_file:
            locks.lock(lock_file, locks.LOCK_EX)
            try:
                yield
            finally:
                locks.unlock(lock_file)

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        with self._exclusive():
            return bool(super().add(key, value, timeout, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> Any:
        with self._exclusive():
            fname = self._key_to_file(key, version)
            try:
                with open(fname, "rb") as f:
                    if self._is_expired(f):  # also deletes it
                        raise ValueError(f"Key '{key}' not found.")
                    f.seek(0)
                    expiry = pickle.load(f)
                    value = pickle.loads(zlib.decompress(f.read()))
            except FileNotFoundError:
                raise ValueError(f"Key '{key}' not found.") from None
            new_value = value + delta
            fd, tmp_path = tempfile.mkstemp(dir=self._dir)
            try:
                with open(fd, "wb") as f:
                    f.write(pickle.dumps(expiry, self.pickle_protocol))
                    f.write(zlib.compress(pickle.dumps(new_value, self.pickle_protocol)))
                os.replace(tmp_path, fname)
            except BaseException:
                os.remove(tmp_path)
                raise
            return new_value
