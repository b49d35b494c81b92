#!/usr/bin/env python3
"""Stream a labeled replay file through the control room's REST API, the way a real service would.

A standalone integration example: it uses only the Python standard library and ``httpx``, and talks to
the server over HTTP only. Copy it and change ``read_rows`` to plug in your own traffic.

    python examples/replay_client.py --key-file var/demo/flights-ingestion-key \\
        --file var/demo/flights-replay.jsonl [--url http://127.0.0.1:8000] [--slug flights] \\
        [--batch 500] [--label-delay 2 | --label-delay 5s] [--speed 0] [--limit N] [--summary-json F]

What it does, in the file's order (the replay is sorted by event time):

1. Sends ``--batch`` rows to ``POST /api/v1/deployments/{slug}/predict`` as ``{"rows": [{"id", "ts",
   "features"}]}`` and keeps each row's ``score`` (compensated) and ``base_score`` (the model alone).
2. Sends the batch's labels to ``POST .../feedback`` later, as ``{"labels": [{"id", "label"}]}``:
   ``--label-delay N`` holds them back until N more batches were predicted (default 2; 0 sends them
   right after their own predictions), ``--label-delay 5s`` for 5 seconds of wall time. Labels still
   waiting when the file ends are sent at once. The server learns from labels only, so a longer delay
   means compensation reacts later.
3. Paces itself to ``--speed`` rows per second (0: as fast as the server answers).
4. Prints a summary: rows, labels, versions and memory revisions seen, and the base model's AUC and log
   loss against the compensated scores', over the whole replay and per month of event time.

Every row of the file is a JSON object ``{"id": str, "ts": ISO-8601, "features": {...}, "label": int}``;
``label`` is the class index (binary: 1 is the positive class, whose probability ``score`` is).

Retries: connection errors, timeouts and HTTP 429/502/503/504 are retried with exponential backoff
(honouring ``Retry-After``). That is safe because predict and feedback are idempotent by id: the
server answers a known id with its stored prediction and ignores a label it already has. Other HTTP
errors stop the client with the server's message.

Authentication: ``--key-file`` (or ``--key``) sends ``Authorization: Key <key>`` (an ingestion key,
which may only predict and send feedback for its deployment); ``--token`` sends ``Authorization:
Token <token>`` (a user's API token, operator role or above).

Exit status: 0 when the whole file was replayed, 1 on an API or connection failure, 2 on bad
arguments, 130 when interrupted (Ctrl-C or SIGTERM), after printing the summary so far.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
LOG_LOSS_EPS = 1e-15  # the server's adaptive.ml.flips uses the same clip
RECENT_ROWS = 5000  # progress lines show AUCs over the last this many labeled rows


class ApiError(Exception):
    """The server refused a request for a reason a retry will not fix, or never answered."""


# --- reading the replay -------------------------------------------------------------------------


def read_rows(path: Path, limit: int | None) -> Iterator[dict[str, Any]]:
    """The replay's rows in file order, at most ``limit`` of them."""
    with path.open() as handle:
        for count, line in enumerate(handle):
            if limit is not None and count >= limit:
                return
            if line.strip():
                yield json.loads(line)


def count_rows(path: Path, limit: int | None) -> int:
    with path.open("rb") as handle:
        total = sum(1 for line in handle if line.strip())
    return total if limit is None else min(total, limit)


def batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- HTTP with retries --------------------------------------------------------------------------


class Api:
    """POSTs JSON to one deployment's endpoints, retrying what is safe to retry."""

    def __init__(self, url: str, slug: str, authorization: str, *, timeout: float, retries: int) -> None:
        self.client = httpx.Client(
            base_url=f"{url.rstrip('/')}/api/v1/deployments/{slug}/",
            headers={"Authorization": authorization, "Content-Type": "application/json"},
            timeout=timeout,
        )
        self.retries = retries
        self.retried = 0

    def close(self) -> None:
        self.client.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        content = json.dumps(body, separators=(",", ":")).encode()
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post(path, content=content)
            except httpx.TransportError as exc:  # refused, reset, timed out: the server may be (re)starting
                problem, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code < 300:
                    return response.json()
                if response.status_code not in RETRY_STATUSES:
                    raise ApiError(f"POST {path}: HTTP {response.status_code}: {response.text[:500]}")
                problem, wait = f"HTTP {response.status_code}", _retry_after(response)
            if attempt == self.retries:
                raise ApiError(f"POST {path}: {problem}; gave up after {self.retries} retries")
            delay = wait if wait is not None else min(10.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)
            print(f"  {path}: {problem}; retrying in {delay:.1f}s", file=sys.stderr, flush=True)
            self.retried += 1
            time.sleep(delay)
        raise AssertionError("unreachable")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(60.0, max(0.0, float(response.headers.get("Retry-After", ""))))
    except ValueError:
        return None


# --- labels held back ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelDelay:
    """``--label-delay``: a number of batches (``"2"``) or of wall-clock seconds (``"5s"``)."""

    batches: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> LabelDelay:
        try:
            if text.endswith("s"):
                seconds = float(text[:-1])
                if math.isfinite(seconds) and seconds >= 0:
                    return cls(seconds=seconds)
            elif int(text) >= 0:
                return cls(batches=int(text))
        except ValueError:
            pass
        raise argparse.ArgumentTypeError(f"expected a number of batches (2) or of seconds (5s), got {text!r}")

    def __str__(self) -> str:
        return f"{self.seconds:g}s" if self.seconds is not None else f"{self.batches} batches"


@dataclass
class PendingLabels:
    """Label batches waiting for their delay: (batch number predicted, monotonic time, labels)."""

    delay: LabelDelay
    queue: collections.deque[tuple[int, float, list[dict[str, Any]]]] = field(default_factory=collections.deque)

    def add(self, batch_number: int, labels: list[dict[str, Any]]) -> None:
        self.queue.append((batch_number, time.monotonic(), labels))

    def due(self, batches_predicted: int) -> Iterator[list[dict[str, Any]]]:
        while self.queue:
            number, at, labels = self.queue[0]
            if self.delay.batches is not None and batches_predicted - number < self.delay.batches:
                return
            if self.delay.seconds is not None and time.monotonic() - at < self.delay.seconds:
                return
            self.queue.popleft()
            yield labels

    def drain(self) -> Iterator[list[dict[str, Any]]]:
        while self.queue:
            yield self.queue.popleft()[2]


# --- metrics, in pure Python ---------------------------------------------------------------------


def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Rank-based ROC AUC (Mann-Whitney U, ties count one half); ``None`` without both classes."""
    positives = sum(1 for y in labels if y == 1)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    order = sorted(range(len(scores)), key=scores.__getitem__)
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid_rank = (i + j) / 2 + 1  # 1-based average rank of the tied run i..j
        rank_sum += mid_rank * sum(1 for k in range(i, j + 1) if labels[order[k]] == 1)
        i = j + 1
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def log_loss(probabilities: Sequence[float], labels: Sequence[int]) -> float:
    total = 0.0
    for p, y in zip(probabilities, labels, strict=True):
        p_true = min(max(p if y == 1 else 1.0 - p, LOG_LOSS_EPS), 1.0 - LOG_LOSS_EPS)
        total -= math.log(p_true)
    return total / len(labels) if labels else math.nan


@dataclass
class Scored:
    """What the server said about the replayed rows, in replay order."""

    months: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    versions: collections.Counter[int] = field(default_factory=collections.Counter)
    revisions: list[int] = field(default_factory=list)

    def add(self, rows: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> None:
        by_id = {str(p["id"]): p for p in predictions}
        for row in rows:
            prediction = by_id[str(row["id"])]
            self.months.append(str(row.get("ts", ""))[:7] or "?")
            self.labels.append(int(row["label"]))
            self.base.append(float(prediction["base_score"]))
            self.score.append(float(prediction["score"]))
            self.versions[prediction.get("version")] += 1
            # Servers that report it say which memory revision compensated the row.
            if prediction.get("memory_revision") is not None:
                self.revisions.append(int(prediction["memory_revision"]))

    def metrics(self, index: Sequence[int] | range) -> dict[str, Any]:
        labels = [self.labels[i] for i in index]
        base = [self.base[i] for i in index]
        score = [self.score[i] for i in index]
        base_auc, comp_auc = roc_auc(base, labels), roc_auc(score, labels)
        return {
            "n": len(labels),
            "positive_rate": sum(labels) / len(labels) if labels else None,
            "base_auc": base_auc,
            "compensated_auc": comp_auc,
            "auc_delta": None if base_auc is None or comp_auc is None else comp_auc - base_auc,
            "base_log_loss": log_loss(base, labels) if labels else None,
            "compensated_log_loss": log_loss(score, labels) if labels else None,
        }


# --- the replay ----------------------------------------------------------------------------------


@dataclass
class Tally:
    rows_sent: int = 0
    batches: int = 0
    labels_sent: int = 0
    accepted: int = 0
    already_labeled: int = 0
    unknown: int = 0


def replay(args: argparse.Namespace, api: Api, scored: Scored, tally: Tally, total: int) -> None:
    pending = PendingLabels(args.label_delay)
    started = time.monotonic()
    next_progress = started + args.progress if args.progress > 0 else math.inf

    def send_labels(labels: list[dict[str, Any]]) -> None:
        answer = api.post("feedback", {"labels": labels})
        tally.labels_sent += len(labels)
        tally.accepted += int(answer.get("accepted", 0))
        tally.already_labeled += len(answer.get("already_labeled", []))
        tally.unknown += len(answer.get("unknown", []))

    for batch in batches(read_rows(args.file, args.limit), args.batch):
        for labels in pending.due(tally.batches):
            send_labels(labels)
        body = {"rows": [{"id": row["id"], "ts": row.get("ts"), "features": row["features"]} for row in batch]}
        scored.add(batch, api.post("predict", body)["predictions"])
        tally.rows_sent += len(batch)
        tally.batches += 1
        pending.add(tally.batches, [{"id": row["id"], "label": row["label"]} for row in batch])
        if args.speed > 0:  # pace to the cap: row n goes out no earlier than n / speed seconds in
            time.sleep(max(0.0, started + tally.rows_sent / args.speed - time.monotonic()))
        if time.monotonic() >= next_progress:
            print(progress_line(scored, tally, total, time.monotonic() - started), flush=True)
            next_progress = time.monotonic() + args.progress
    for labels in pending.due(tally.batches):
        send_labels(labels)
    for labels in pending.drain():  # the file has ended: no prediction is left to wait for them
        send_labels(labels)


def progress_line(scored: Scored, tally: Tally, total: int, elapsed: float) -> str:
    recent = range(max(0, len(scored.labels) - RECENT_ROWS), len(scored.labels))
    m = scored.metrics(recent)
    revision = f", memory revision {scored.revisions[-1]}" if scored.revisions else ""
    return (
        f"  {tally.rows_sent}/{total} rows ({scored.months[-1] if scored.months else '-'}), "
        f"{tally.labels_sent} labels, {tally.rows_sent / max(elapsed, 1e-9):.0f} rows/s{revision}; "
        f"last {m['n']}: base AUC {_fmt(m['base_auc'])}, compensated {_fmt(m['compensated_auc'])}"
    )


def summarise(
    args: argparse.Namespace, scored: Scored, tally: Tally, api: Api, seconds: float, interrupted: bool
) -> tuple[list[str], dict[str, Any]]:
    """The summary as printable lines and as a JSON-ready dict."""
    overall = scored.metrics(range(len(scored.labels)))
    months: dict[str, list[int]] = collections.defaultdict(list)
    for i, month in enumerate(scored.months):
        months[month].append(i)
    per_month = {month: scored.metrics(index) for month, index in sorted(months.items())}
    compensated_rows = sum(1 for b, s in zip(scored.base, scored.score, strict=True) if b != s)
    data = {
        "slug": args.slug,
        "file": str(args.file),
        "interrupted": interrupted,
        "seconds": round(seconds, 2),
        "rows_sent": tally.rows_sent,
        "batches": tally.batches,
        "labels_sent": tally.labels_sent,
        "labels_accepted": tally.accepted,
        "labels_already_labeled": tally.already_labeled,
        "labels_unknown": tally.unknown,
        "retries": api.retried,
        "versions": {str(v): n for v, n in sorted(scored.versions.items(), key=lambda item: str(item[0]))},
        "memory_revision_first": scored.revisions[0] if scored.revisions else None,
        "memory_revision_last": scored.revisions[-1] if scored.revisions else None,
        "compensated_rows": compensated_rows,
        "batch": args.batch,
        "label_delay": str(args.label_delay),
        "speed": args.speed,
        "overall": overall,
        "months": per_month,
    }
    rate = tally.rows_sent / seconds if seconds > 0 else 0.0
    versions = ", ".join(f"v{v} x{n}" for v, n in data["versions"].items()) or "-"
    revisions = f"{scored.revisions[0]} -> {scored.revisions[-1]}" if scored.revisions else "not reported"
    lines = [
        "",
        f"== Replay summary: {args.slug}{' (interrupted)' if interrupted else ''}",
        f"rows {tally.rows_sent} in {tally.batches} batches of up to {args.batch}, {seconds:.1f}s ({rate:.0f} rows/s), "
        f"label delay {args.label_delay}, {api.retried} retries",
        f"labels sent {tally.labels_sent}: accepted {tally.accepted}, already labeled {tally.already_labeled}, "
        f"unknown {tally.unknown}",
        f"versions served: {versions}; memory revision {revisions}",
        "",
        f"{'month':<8} {'events':>7} {'delayed':>8} {'base AUC':>9} {'comp AUC':>9} {'delta':>8} "
        f"{'base LL':>8} {'comp LL':>8}",
    ]
    for month, m in [*per_month.items(), ("all", overall)]:
        lines.append(
            f"{month:<8} {m['n']:>7} {_fmt(m['positive_rate'], 3):>8} {_fmt(m['base_auc']):>9} "
            f"{_fmt(m['compensated_auc']):>9} {_fmt(m['auc_delta'], signed=True):>8} "
            f"{_fmt(m['base_log_loss']):>8} {_fmt(m['compensated_log_loss']):>8}"
        )
    lines += [
        "",
        f"base AUC {_fmt(overall['base_auc'])} | compensated AUC {_fmt(overall['compensated_auc'])} | "
        f"delta {_fmt(overall['auc_delta'], signed=True)}",
        f"base log loss {_fmt(overall['base_log_loss'])} | compensated log loss "
        f"{_fmt(overall['compensated_log_loss'])}",
    ]
    if tally.rows_sent and compensated_rows == 0:
        lines.append("note: score == base_score on every row: the server did not compensate (off, or memory empty)")
    if tally.already_labeled:
        lines.append(
            f"note: {tally.already_labeled} labels were already stored (an earlier replay of the same ids): "
            "their scores are the ones stored then"
        )
    return lines, data


def _fmt(value: float | None, digits: int = 4, *, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


# --- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server (default %(default)s)")
    parser.add_argument("--slug", default="flights", help="deployment (default %(default)s)")
    parser.add_argument(
        "--file", type=Path, default=Path("var/demo/flights-replay.jsonl"), help="replay JSONL (default %(default)s)"
    )
    auth = parser.add_mutually_exclusive_group(required=True)
    auth.add_argument("--key-file", type=Path, help="file holding an ingestion key (Authorization: Key)")
    auth.add_argument("--key", help="an ingestion key (Authorization: Key)")
    auth.add_argument("--token", help="a user's API token (Authorization: Token)")
    parser.add_argument("--batch", type=_positive_int, default=500, help="rows per request (default %(default)s)")
    parser.add_argument(
        "--label-delay",
        type=LabelDelay.parse,
        default=LabelDelay(batches=2),
        help="send a batch's labels after N more batches (e.g. 2, the default) or S seconds (e.g. 5s)",
    )
    parser.add_argument("--speed", type=float, default=0.0, help="rows per second at most; 0 = unlimited (default)")
    parser.add_argument("--limit", type=_positive_int, default=None, help="replay only the first N rows")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default %(default)s)")
    parser.add_argument("--retries", type=int, default=8, help="retries per request (default %(default)s)")
    parser.add_argument("--progress", type=float, default=10.0, help="seconds between progress lines; 0 = none")
    parser.add_argument("--summary-json", type=Path, default=None, help="also write the summary to this file")
    args = parser.parse_args(argv)
    if args.speed < 0 or not math.isfinite(args.speed):
        parser.error("--speed must be a number >= 0")
    if not args.file.is_file():
        parser.error(f"no replay file {args.file} (bin/up writes it: manage.py demo_setup)")
    return args


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _authorization(args: argparse.Namespace) -> str:
    if args.token:
        return f"Token {args.token}"
    key = args.key if args.key else args.key_file.read_text().strip()
    return f"Key {key}"


def _interrupt(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: a second one must not cut the summary short
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop like Ctrl-C: print what was measured so far
    total = count_rows(args.file, args.limit)
    print(
        f"replaying {total} rows of {args.file} to {args.url} ({args.slug}): batches of {args.batch}, "
        f"label delay {args.label_delay}, speed {f'{args.speed:g} rows/s' if args.speed else 'unlimited'}",
        flush=True,
    )
    api = Api(args.url, args.slug, _authorization(args), timeout=args.timeout, retries=args.retries)
    scored, tally = Scored(), Tally()
    started = time.monotonic()
    status, interrupted = 0, False
    try:
        replay(args, api, scored, tally, total)
    except KeyboardInterrupt:
        status, interrupted = 130, True
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        api.close()
    lines, data = summarise(args, scored, tally, api, time.monotonic() - started, interrupted)
    print("\n".join(lines), flush=True)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps({**data, "exit_status": status}, indent=1) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
