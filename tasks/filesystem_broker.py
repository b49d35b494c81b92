"""The embedded broker: kombu's file-system transport, made safe for several processes.

kombu's own transport (``kombu.transport.filesystem``) lets a consumer take a message file that its
producer has created but not yet written: the producer opens the file in the queue folder and locks
it, but the consumer never takes that lock, it renames the file away and decodes what is there, an
empty string. ``json.loads`` raises, and Celery stops the worker with ``Unrecoverable error:
JSONDecodeError`` (kombu#1551; seen once in a full-year demo). The exchange tables have the same
race: a new table is created by truncating it before it is locked, so a reader can see an empty file.

This transport keeps kombu's options, exchange tables and message format, and changes how files move:

- a message is written whole under ``tmp_folder`` and renamed into its queue's folder
  (``os.replace`` is atomic within one file system), so a consumer only ever sees complete files;
- each queue has its own folder under ``data_folder_in``: kombu keeps every queue in one folder, so
  each poll of each queue lists every message of every other queue (bench/broker.py, with this
  transport still in one folder: 2,000 messages waiting on a queue nobody reads took an idle
  worker from 1.5% to 23% of a core at a 20 ms poll; in a folder per queue, 1.3%);
- a consumer claims a file by renaming it into ``processing_folder``: only one rename of a name can
  succeed, so two consumers never get the same message (kombu falls back to copying when its
  temporary folder is on another file system, and then two can);
- a file that cannot be read or is not a kombu message (empty, truncated, garbage, written by hand)
  is moved to ``quarantine_folder`` with an ERROR log line, and the consumer goes on with the next
  file instead of raising into the worker;
- exchange tables are rewritten whole and renamed into place under an exclusive lock on a separate
  lock file, so concurrent bindings are never lost and readers never see a partial table.

Left as kombu has it: a message is deleted once read, before the task runs, so a worker killed at
that moment loses it (the app's sweeps re-send queued jobs), and nothing expires old messages.

``register()`` makes ``filesystem://`` mean this transport in the calling process (tasks.celery
calls it, so web, worker and beat processes all use it).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cached_property, lru_cache
from pathlib import Path
from queue import Empty
from typing import Any
from urllib.parse import quote

import kombu.transport
from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

logger = logging.getLogger(__name__)

# bench/broker.py: at 20 ms an idle worker (three queues, its control and gossip queues) costs 1.4%
# of a core and a message waits 14 ms (p50) to be picked up; at kombu's 1 s it waited 508 ms, and a
# worker whose prefetch is full sleeps a whole interval before it looks again. Settings pass the
# interval (BROKER_POLL_MS); this is the default for a connection made without it.
DEFAULT_POLLING_INTERVAL = 0.02

# What kombu's consumer reads from a message before it acknowledges it: a payload that lacks any of
# these makes the worker raise (KeyError) instead of rejecting one message.
_MESSAGE_ERRORS = (KeyError, TypeError, ValueError, AttributeError)


@lru_cache(maxsize=1024)
def queue_folder(root: str, queue: str) -> Path:
    """The folder that holds ``queue``'s messages under the broker's queue folder ``root``."""
    if queue in ("", ".", ".."):
        raise ChannelError(f"Invalid queue name for the file-system broker: {queue!r}")
    # Worker names go into queue names (``name@host.celery.pidbox``): escape what a path cannot hold.
    return Path(root) / quote(queue, safe="@.-_+")


class Channel(filesystem.Channel):
    """A file-system channel whose files appear whole and whose bad files are set aside."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        folders = [self.data_folder_in, self.data_folder_out, self.tmp_folder, self.processing_folder]
        for folder in [*folders, self.quarantine_folder, self.control_folder]:
            Path(folder).mkdir(parents=True, exist_ok=True)
        # Renames are only atomic within one file system; across two they fail (EXDEV), so say it now
        # rather than at the first message.
        if len({os.stat(folder).st_dev for folder in folders}) > 1:
            raise ChannelError(f"filesystem broker folders must be on one file system: {folders}")
        self._adopt_flat_messages()

    # --- messages ---------------------------------------------------------------------------------

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        queue_folder(self.data_folder_in, queue).mkdir(exist_ok=True)

    # kombu's own classes disagree on the second argument's name (message, payload): either name
    # breaks the override for mypy, and kombu passes it by position.
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Write the message under tmp/, then rename it into the queue's folder in one step."""
        # Wall-clock nanoseconds, zero-padded: names sort in publishing order, across processes and
        # across a reboot (kombu's monotonic milliseconds restart at boot and are not padded).
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.msg"
        # Plain strings on this path: pathlib's parsing cost about a tenth of a publish.
        staged = os.path.join(self.tmp_folder, name)
        folder = str(queue_folder(self.data_folder_out, queue))
        target = os.path.join(folder, name)
        try:
            with open(staged, "xb") as file:
                file.write(str_to_bytes(dumps(message)))
            # No fsync: a machine crash can leave an empty file in the queue, which the consumer then
            # quarantines; an fsync per message would cost milliseconds on every publish.
            try:
                os.replace(staged, target)
            except FileNotFoundError:  # the queue's folder was never made here, or was deleted
                os.makedirs(folder, exist_ok=True)
                os.replace(staged, target)
        except OSError as exc:
            with suppress(FileNotFoundError):
                os.unlink(staged)
            raise ChannelError(f"Cannot add message {name!r} to queue {queue!r}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """Claim, read and return the oldest message of ``queue``; quarantine files that are not one."""
        folder = queue_folder(self.data_folder_in, queue)
        for name in self._message_files(folder):
            claimed = self.processing_folder / name
            try:
                os.rename(folder / name, claimed)
            except FileNotFoundError:
                continue  # another consumer claimed it first
            try:
                payload = loads(bytes_to_str(claimed.read_bytes()))
                # Build the message kombu's consumer will build, so a payload that would make it
                # raise is caught here, where it can be set aside.
                self.Message(payload, channel=self)
            except (OSError, *_MESSAGE_ERRORS) as exc:
                self._quarantine(claimed, queue, exc)
                continue
            self._finish(claimed)
            return payload
        raise Empty()

    @staticmethod
    def _message_files(folder: Path) -> list[str]:
        try:
            return sorted(os.listdir(folder))
        except FileNotFoundError:
            return []

    def _finish(self, claimed: Path) -> None:
        if self.store_processed:
            Path(self.processed_folder).mkdir(parents=True, exist_ok=True)
            os.replace(claimed, Path(self.processed_folder) / claimed.name)
        else:
            claimed.unlink(missing_ok=True)

    def _quarantine(self, claimed: Path, queue: str, error: BaseException) -> None:
        target = self.quarantine_folder / f"{queue_folder('', queue).name}.{claimed.name}"
        try:
            os.replace(claimed, target)
        except OSError as exc:
            # It is out of the queue's folder already, so it cannot be picked up again; say where.
            logger.error(
                "Broker message on queue %r is unreadable (%s: %s) and stays at %s: %s",
                queue,
                type(error).__name__,
                error,
                claimed,
                exc,
            )
            return
        logger.error(
            "Broker message on queue %r is unreadable and was moved to %s: %s: %s",
            queue,
            target,
            type(error).__name__,
            error,
        )

    def _size(self, queue: str) -> int:
        return len(self._message_files(queue_folder(self.data_folder_in, queue)))

    def _purge(self, queue: str) -> int:
        folder = queue_folder(self.data_folder_in, queue)
        count = 0
        for name in self._message_files(folder):
            try:
                (folder / name).unlink()
                count += 1
            except FileNotFoundError:
                continue  # a consumer took it meanwhile
        return count

    def _adopt_flat_messages(self) -> None:
        """Move messages left in kombu's flat layout (``<time>_<uuid>.<queue>.msg``) to their queues.

        Only messages queued by an older version of the app before an upgrade can be there.
        """
        with os.scandir(self.data_folder_in) as entries:
            flat = [e.name for e in entries if e.is_file() and e.name.endswith(".msg") and e.name.count(".") >= 2]
        for name in flat:
            queue = name.partition(".")[2].removesuffix(".msg")
            folder = queue_folder(self.data_folder_in, queue)
            folder.mkdir(exist_ok=True)
            try:
                os.rename(Path(self.data_folder_in) / name, folder / name)
            except FileNotFoundError:
                continue  # another process adopted it
            logger.info("Moved broker message %s of queue %r into %s", name, queue, folder)

    # --- exchange tables --------------------------------------------------------------------------

    def get_table(self, exchange: str) -> list[filesystem.exchange_queue_t]:
        """Read a table: tables are replaced whole, so a plain read never sees half of one."""
        return [filesystem.exchange_queue_t(*row) for row in self._read_table(self._exchange_file(exchange))]

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange) as table_file:
            rows = [filesystem.exchange_queue_t(*row) for row in self._read_table(table_file)]
            if binding not in rows:
                self._write_table(table_file, [binding, *rows])

    def _delete(self, queue: str, exchange: str, routing_key: str, pattern: str, *args: Any, **kwargs: Any) -> None:
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)  # purge the queue
        binding = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with self._table_lock(exchange) as table_file:
            rows = [filesystem.exchange_queue_t(*row) for row in self._read_table(table_file)]
            if binding in rows:
                self._write_table(table_file, [row for row in rows if row != binding])
        # Reply queues of remote-control calls come and go by the hundred: keep their folders from
        # piling up. A message published meanwhile keeps the folder (rmdir fails on it) or makes it anew.
        with suppress(OSError):
            queue_folder(self.data_folder_in, queue).rmdir()

    @contextmanager
    def _table_lock(self, exchange: str) -> Iterator[Path]:
        """Hold an exclusive lock for a read-modify-write of one exchange's table.

        The lock lives on its own file: the table itself is replaced by a rename, and a lock on a
        file that has just been replaced protects nothing.
        """
        table_file = self._exchange_file(exchange)
        with open(table_file.with_name(table_file.name + ".lock"), "a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield table_file
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    @staticmethod
    def _read_table(table_file: Path) -> list[list[str]]:
        try:
            raw = table_file.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ChannelError(f"Cannot read {table_file}") from exc
        try:
            rows = loads(bytes_to_str(raw))
        except ValueError as exc:
            # Only kombu's own transport writes a table in place; ours never leaves half of one.
            raise ChannelError(f"Exchange table {table_file} is not valid JSON") from exc
        return list(rows)

    @staticmethod
    def _write_table(table_file: Path, rows: list[filesystem.exchange_queue_t]) -> None:
        staged = table_file.with_name(f".{table_file.name}.{uuid.uuid4().hex}.tmp")
        try:
            staged.write_bytes(str_to_bytes(dumps(rows)))
            os.replace(staged, table_file)
        except OSError as exc:
            staged.unlink(missing_ok=True)
            raise ChannelError(f"Cannot write {table_file}") from exc

    # --- folders ----------------------------------------------------------------------------------

    def _folder(self, option: str, name: str) -> Path:
        """A folder from the transport options, else a sibling of the queue folder."""
        configured = self.transport_options.get(option)
        return Path(configured) if configured else Path(self.data_folder_in).absolute().parent / name

    @cached_property
    def tmp_folder(self) -> Path:
        return self._folder("tmp_folder", "tmp")

    @cached_property
    def processing_folder(self) -> Path:
        return self._folder("processing_folder", "processing")

    @cached_property
    def quarantine_folder(self) -> Path:
        return self._folder("quarantine_folder", "quarantine")


class Transport(filesystem.Transport):
    """kombu's file-system transport with atomic publishing and quarantine (see the module doc)."""

    Channel = Channel
    # Bindings of this transport, not shared with kombu's own in the same process.
    global_state = virtual.BrokerState()
    polling_interval = DEFAULT_POLLING_INTERVAL


def register() -> None:
    """Make ``filesystem://`` URLs use this transport in this process.

    An alias, not Celery's ``broker_transport`` setting: that setting would also apply to a URL given
    on the command line (``celery -b redis://...``) or set later, and turn it into a file broker.
    """
    path = f"{__name__}:Transport"
    kombu.transport.TRANSPORT_ALIASES["filesystem"] = path
    # kombu caches resolved aliases; drop a resolution made before this call.
    kombu.transport._transport_cache.pop("filesystem", None)
