#!/usr/bin/env python3
"""Stream a labeled replay file through the control room's REST API, the way a real service would.

A standalone integration example: it uses only the Python standard library and ``httpx``, and talks to
the server over HTTP only. Copy it and change ``read_rows`` to plug in your own traffic.

    python examples/replay_client.py --key-file var/demo/flights-ingestion-key \\
        --file var/demo/flights-replay.jsonl [--url http://127.0.0.1:8000] [--slug flights] \\
        [--batch 500] [--label-delay 2 | --label-delay 5s] [--speed 0] [--limit N] [--summary-json F] \\
        [--retrain-at 0.6 --token-file var/demo/operator-token [--retrain-params '{"epochs": 3}']]

What it does, in the file's order (the replay is sorted by event time):

1. Sends ``--batch`` rows to ``POST /api/v1/deployments/{slug}/predict`` as ``{"rows": [{"id", "ts",
   "features"}]}`` and keeps each row's ``score`` (compensated) and ``base_score`` (the model alone).
2. Sends the batch's labels to ``POST .../feedback`` later, as ``{"labels": [{"id", "label"}]}``:
   ``--label-delay N`` holds them back until N more batches were predicted (default 2; 0 sends them
   right after their own predictions), ``--label-delay 5s`` for 5 seconds of wall time. Labels still
   waiting when the file ends are sent at once. The server learns from labels only, so a longer delay
   means compensation reacts later.
3. Paces itself to ``--speed`` rows per second (0: as fast as the server answers).
4. Optionally (``--retrain-at FRACTION``), once that share of the rows was sent and at least
   ``MIN_RETRAIN_LABELS`` labels were accepted, asks for a retrain: ``POST .../retrain`` with a reason
   and ``--retrain-params`` (training overrides such as ``epochs``, ``recent``, ``distill``). The
   server trains a candidate from the live version on the ``gpu`` queue, then compares it with the
   live version on the newest labeled events, which the round held out (a *flip report*: accuracy,
   AUC, negative and positive flips, the gate's verdict). A candidate that passes the gates is promoted
   when the deployment's retrain policy is ``auto``; one that fails them is rejected. The replay goes
   on meanwhile, as real traffic would; between batches the client follows ``GET /api/v1/jobs/{id}``,
   then the evaluation job, the flip report (``GET .../flip-reports/{id}``) and the release that put
   the candidate live (``GET .../releases``). When the file ends before the verdict, it waits for it
   (at most ``--retrain-timeout`` seconds). If the server answers 409 because a retrain is already
   running (the auto policy may have started one), the client follows that one instead.
5. With a user's token (``--token-file`` or ``--token``), watches the loop: every ``--loop-every``
   seconds it reads ``GET /api/v1/loop`` (labels waiting for the error memory, labels in no closed
   window, the loop's alerts); after the file it waits up to ``--settle-timeout`` seconds for the
   memory and the windows to catch up, prints the lags and calls the loop *stalled* when labels still
   wait for the memory (more than two batches), more than two windows' labels wait for a window, or
   a queue the loop needs has no healthy consumer.
6. Prints a summary: rows, labels, versions and memory revisions seen, and the base model's AUC and log
   loss against the compensated scores', over the whole replay, per month of event time and per
   version served; with ``--retrain-at``, the retrain job, its flip report and the promotion or block.

Every row of the file is a JSON object ``{"id": str, "ts": ISO-8601, "features": {...}, "label": int}``;
``label`` is the class index (binary: 1 is the positive class, whose probability ``score`` is).

Retries: connection errors, timeouts and HTTP 429/502/503/504 are retried with exponential backoff
(honouring ``Retry-After``). That is safe because predict and feedback are idempotent by id: the
server answers a known id with its stored prediction and ignores a label it already has; reads are
safe anyway, and a retried retrain request that had reached the server meets a 409 and follows the
job it created. Other HTTP errors stop the client with the server's message (a failed retrain step
stops only the retrain: the replay goes on).

Authentication: ``--key-file`` (or ``--key``) sends ``Authorization: Key <key>`` (an ingestion key,
which may only predict and send feedback for its deployment); ``--token`` sends ``Authorization:
Token <token>`` (a user's API token, operator role or above). The retrain needs an operator: with an
ingestion key for the traffic, pass the operator's token in ``--token-file`` (a file, so that it does
not show in the process list); an ingestion key asking for a retrain gets HTTP 403.

Exit status: 0 when the whole file was replayed (and the retrain, when asked for, reached a verdict:
promoted, rejected or waiting for an operator), 1 on an API or connection failure, a retrain that
failed or timed out, or a loop that stalled; 2 on bad arguments; 130 when interrupted (Ctrl-C or
SIGTERM), after printing the summary so far.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
LOG_LOSS_EPS = 1e-15  # the server's adaptive.ml.flips uses the same clip
RECENT_ROWS = 5000  # progress lines show AUCs over the last this many labeled rows
# The retrain is requested once this many labels were accepted, whatever --retrain-at says: the server
# refuses a round with fewer than 200 labeled events, and holds the newest fifth of them out.
MIN_RETRAIN_LABELS = 500
RETRAIN_POLL_SECONDS = 1.0  # at most one look at the retrain's jobs per this many seconds
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class ApiError(Exception):
    """The server refused a request for a reason a retry will not fix, or never answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status, None when the server never answered


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
    """Sends JSON to the API, retrying what is safe to retry.

    Paths are a deployment's (``"predict"`` is ``/api/v1/deployments/{slug}/predict``) unless they start
    with ``/``, which is the API's root (``"/jobs/7"`` is ``/api/v1/jobs/7``).
    """

    def __init__(self, url: str, slug: str, authorization: str, *, timeout: float, retries: int) -> None:
        self.client = httpx.Client(
            base_url=f"{url.rstrip('/')}/api/v1/",
            headers={"Authorization": authorization, "Content-Type": "application/json"},
            timeout=timeout,
        )
        self.slug = slug
        self.retries = retries
        self.retried = 0
        self.seconds: list[float] = []  # each call's wall time, retries included: what a caller waits

    def close(self) -> None:
        self.client.close()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._send("POST", path, content=json.dumps(body, separators=(",", ":")).encode())

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._send("GET", path, params=params)

    def _send(self, method: str, path: str, **request: Any) -> dict[str, Any]:
        started = time.monotonic()
        try:
            return self._send_retrying(method, path, **request)
        finally:
            self.seconds.append(time.monotonic() - started)

    def _send_retrying(self, method: str, path: str, **request: Any) -> dict[str, Any]:
        url = path.lstrip("/") if path.startswith("/") else f"deployments/{self.slug}/{path}"
        for attempt in range(self.retries + 1):
            try:
                response = self.client.request(method, url, **request)
            except httpx.TransportError as exc:  # refused, reset, timed out: the server may be (re)starting
                problem, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code < 300:
                    answer: dict[str, Any] = response.json()
                    return answer
                if response.status_code not in RETRY_STATUSES:
                    raise ApiError(
                        f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}", response.status_code
                    )
                problem, wait = f"HTTP {response.status_code}", _retry_after(response)
            if attempt == self.retries:
                raise ApiError(f"{method} {path}: {problem}; gave up after {self.retries} retries")
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
    versions: collections.Counter[int | None] = field(default_factory=collections.Counter)
    served_by: list[int | None] = field(default_factory=list)  # the version that scored each row
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
            self.served_by.append(prediction.get("version"))
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


# --- the retrain: request it, follow it, report it -----------------------------------------------


@dataclass
class Retrain:
    """``--retrain-at``: one retrain requested part-way through the replay and followed to its verdict.

    The server's pipeline: the retrain job trains a candidate version from the live one, then queues an
    evaluation job (``params.retrain_job`` names the retrain) that writes a flip report and acts on the
    gate: the candidate is rejected, promoted by the auto policy, or left for an operator. ``follow``
    advances through it with one or two GETs and never blocks; ``wait`` polls until the verdict.
    """

    api: Api
    at: float
    params: dict[str, Any]
    reason: str
    requested_after: dict[str, Any] | None = None
    note: str = ""
    job: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    release: dict[str, Any] | None = None
    error: str | None = None
    # The newest job before the replay, and the comparisons made meanwhile besides this retrain's (the
    # auto policy retrains on drift by itself; an operator may compare versions).
    jobs_before: int = 0
    others: list[dict[str, Any]] = field(default_factory=list)
    _next_look: float = 0.0

    def start(self) -> None:
        """Before the replay: check the token (a wrong one fails here, not part-way) and mark the jobs so far."""
        try:
            page = self.api.get("/jobs", {"deployment": self.api.slug, "limit": 1})
        except ApiError as exc:
            self.error = f"the operator's token: {exc}"
            print(f"  retrain: {self.error}", file=sys.stderr, flush=True)
            return
        self.jobs_before = page["results"][0]["id"] if page["results"] else 0

    @property
    def requested(self) -> bool:
        return self.job is not None or self.error is not None

    @property
    def done(self) -> bool:
        """A verdict (the flip report and what became of the candidate), or an error."""
        return self.error is not None or self.report is not None

    def collect_others(self) -> None:
        """After the replay: the flip reports of other evaluations that ran meanwhile, and their candidates' fate."""
        if self.job is None:
            return
        mine = self.report["id"] if self.report is not None else None
        try:
            reports = self.api.get("flip-reports", {"limit": 20})["results"]
            for report in reversed(reports):  # oldest first
                if report["job"] is not None and report["job"] > self.jobs_before and report["id"] != mine:
                    version = self.api.get(f"versions/{report['new_version']}")
                    self.others.append({**report, "new_status": version["status"]})
        except ApiError as exc:  # only a footnote of the summary: say so and go on
            print(f"  retrain: listing the other flip reports: {exc}", file=sys.stderr, flush=True)

    def due(self, tally: Tally, total: int) -> bool:
        return not self.requested and tally.rows_sent >= self.at * total and tally.labels_in >= MIN_RETRAIN_LABELS

    def request(self, tally: Tally, month: str) -> None:
        """POST the retrain; on 409 (one is already queued or running) follow that one."""
        self.requested_after = {"rows": tally.rows_sent, "labels": tally.labels_in, "month": month}
        body = {"reason": self.reason, "params": self.params}
        try:
            try:
                self.job = self.api.post("retrain", body)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                self.job = self._active_retrain()
                if self.job is None:  # it finished between the two requests: ask again
                    self.job = self.api.post("retrain", body)
                else:
                    by = self.job.get("requested_by") or "the retrain policy"
                    self.note = (
                        f"a retrain was already {self.job['status']} (job {self.job['id']}, by {by}): followed it"
                    )
        except ApiError as exc:
            self.error = f"retrain request: {exc}"
            print(f"  retrain: {self.error}", file=sys.stderr, flush=True)
            return
        answer = self.note.replace("followed it", "following it") or f"job {self.job['id']} {self.job['status']}"
        print(
            f"  retrain requested after {tally.rows_sent} rows ({month}, {tally.labels_in} labels): {answer}",
            flush=True,
        )
        self._next_look = time.monotonic() + RETRAIN_POLL_SECONDS

    def _active_retrain(self) -> dict[str, Any] | None:
        page = self.api.get("/jobs", {"deployment": self.api.slug, "kind": "retrain", "limit": 10})
        return next((job for job in page["results"] if job["status"] not in FINISHED), None)

    def follow(self, *, force: bool = False) -> None:
        """One step along the pipeline, at most every RETRAIN_POLL_SECONDS; errors end the retrain only."""
        if self.job is None or self.done or (not force and time.monotonic() < self._next_look):
            return
        self._next_look = time.monotonic() + RETRAIN_POLL_SECONDS
        try:
            self._step()
        except ApiError as exc:
            self.error = f"following the retrain: {exc}"
            print(f"  retrain: {self.error}", file=sys.stderr, flush=True)

    def _step(self) -> None:
        assert self.job is not None
        if self.job["status"] not in FINISHED:
            self.job = self.api.get(f"/jobs/{self.job['id']}")
            if self.job["status"] not in FINISHED:
                return
            print(f"  retrain job {self.job['id']} {self.job['status']}: {self.job['message']}", flush=True)
            if self.job["status"] != "succeeded":
                self.error = f"retrain job {self.job['id']} {self.job['status']}: {self.job['message']}"
                return
        if self.evaluation is None or self.evaluation["status"] not in FINISHED:
            # The retrain queues its evaluation when it succeeds; the newest evaluations come first.
            page = self.api.get("/jobs", {"deployment": self.api.slug, "kind": "evaluation", "limit": 20})
            mine = [job for job in page["results"] if job["params"].get("retrain_job") == self.job["id"]]
            if not mine:
                return
            self.evaluation = mine[0]
            if self.evaluation["status"] not in FINISHED:
                return
            if self.evaluation["status"] != "succeeded":
                self.error = (
                    f"evaluation job {self.evaluation['id']} {self.evaluation['status']}: {self.evaluation['message']}"
                )
                return
        outcome = self.evaluation["metrics"]
        if outcome.get("promoted"):
            releases = self.api.get("releases", {"limit": 10})["results"]
            self.release = next(
                (r for r in releases if r["version"] == outcome["new"] and r["kind"] == "promotion"), None
            )
        self.report = self.api.get(f"flip-reports/{outcome['report']}")
        print(f"  flip report {self.report['id']}: {self.verdict()}", flush=True)

    def wait(self, timeout: float) -> None:
        """Follow until the verdict, an error or ``timeout`` seconds (then an error)."""
        if self.job is None or self.done:
            return
        print(f"waiting for the retrain (job {self.job['id']}, at most {timeout:g}s)...", flush=True)
        deadline = time.monotonic() + timeout
        while not self.done:
            if time.monotonic() >= deadline:
                where = self.evaluation or self.job
                self.error = (
                    f"no verdict after {timeout:g}s: {where['kind']} job {where['id']} {where['status']} "
                    f"({where['message']})"
                )
                return
            time.sleep(max(0.0, self._next_look - time.monotonic()))
            self.follow(force=True)

    def verdict(self) -> str:
        """What became of the candidate, in a few words."""
        if self.report is None or self.evaluation is None:
            return "no verdict"
        outcome = self.evaluation["metrics"]
        new, status = outcome["new"], outcome.get("new_status")
        if outcome.get("promoted"):
            return f"gate passed, v{new} promoted"
        if status == "rejected":
            return f"gate failed, v{new} blocked (rejected)"
        if self.report["gate_passed"]:
            return f"gate passed, v{new} waits for an operator (retrain policy manual)"
        return f"gate failed, v{new} is {status}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "params": self.params,
            "requested_after": self.requested_after,
            "note": self.note or None,
            "job": self.job,
            "evaluation": self.evaluation,
            "flip_report": self.report,
            "release": self.release,
            "verdict": self.verdict() if self.report is not None else None,
            "error": self.error,
            "other_flip_reports": self.others,
        }

    def lines(self) -> list[str]:
        """The summary's retrain section."""
        if self.job is None:
            return ["", "== Retrain", self.error or f"not requested: fewer than {MIN_RETRAIN_LABELS} labels were in"]
        job, params, after = self.job, self.job["params"], self.requested_after or {}
        when = f"{after.get('rows')} rows ({after.get('month')}, {after.get('labels')} labels)"
        lines = ["", f"== Retrain: requested after {when}"]
        if self.note:
            lines.append(self.note)
        lines.append(
            f"retrain job {job['id']}: {job['status']}{_took(job)} on {job.get('device') or '-'}; "
            f"epochs {params.get('epochs')}, recent {params.get('recent')}, distill {params.get('distill')}"
        )
        if job["status"] == "succeeded":
            m = job.get("metrics") or {}
            lines.append(
                f"  candidate v{m.get('version')}: {m.get('epochs_run')} epochs run (best {m.get('best_epoch')}), "
                f"{m.get('n_train')} training rows ({m.get('n_replay')} replayed), "
                f"validation AUC {_fmt(m.get('val_auc'))}, training {_fmt(m.get('seconds'), 1)}s"
            )
        if self.evaluation is not None:
            lines.append(f"evaluation job {self.evaluation['id']}: {self.evaluation['status']}{_took(self.evaluation)}")
        report = self.report
        if report is not None and self.evaluation is not None:
            old, new = report["old_version"], report["new_version"]
            lines += [
                f"flip report {report['id']}: v{old} -> v{new} on {report['n']} held-out labeled events",
                f"  accuracy {_fmt(report['old_accuracy'])} -> {_fmt(report['new_accuracy'])} | "
                f"AUC {_fmt(report['old_auc'])} -> {_fmt(report['new_auc'])}",
                f"  NFR {_fmt(report['nfr'])} [{_fmt(report['nfr_low'])}, {_fmt(report['nfr_high'])}] | "
                f"PFR {_fmt(report['pfr'])} | relative NFR {_fmt(report['relative_nfr'])}",
                f"  gate {'passed' if report['gate_passed'] else 'failed'}:",
                *(f"    {reason}" for reason in report["gate_reasons"]),
            ]
            outcome = self.evaluation["metrics"]
            if outcome.get("promoted"):
                release = self.release or {}
                since = f" since {release['started_at']}" if release else ""
                lines.append(f"promoted: v{new} live{since} by {release.get('actor', 'policy')}, replacing v{old}")
            elif outcome.get("new_status") == "rejected":
                lines.append(f"blocked: v{new} rejected by the gate; v{old} stays live")
            else:
                lines.append(f"not promoted: {self.verdict()}")
        if self.error:
            lines.append(f"error: {self.error}")
        if self.others:
            lines.append(
                "other comparisons during the replay (the auto retrain policy's own retrains, or an operator's):"
            )
        for other in self.others:
            lines.append(
                f"  flip report {other['id']}: v{other['old_version']} -> v{other['new_version']} on {other['n']} "
                f"events, NFR {_fmt(other['nfr'])} (upper {_fmt(other['nfr_high'])}), "
                f"gate {'passed' if other['gate_passed'] else 'failed'}; v{other['new_version']} is now "
                f"{other['new_status']}"
            )
        return lines


def _took(job: dict[str, Any]) -> str:
    """`` in 4.2s (queued 0.8s)`` from a job's timestamps, as far as they are set."""
    took = _seconds_between(job.get("started_at"), job.get("finished_at"))
    queued = _seconds_between(job.get("created_at"), job.get("started_at"))
    return (f" in {took:.1f}s" if took is not None else "") + (f" (queued {queued:.1f}s)" if queued is not None else "")


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


# --- the replay ----------------------------------------------------------------------------------


@dataclass
class Tally:
    rows_sent: int = 0
    batches: int = 0
    labels_sent: int = 0
    accepted: int = 0
    already_labeled: int = 0
    unknown: int = 0

    @property
    def labels_in(self) -> int:
        """Labels the server holds for the replayed rows (stored now, or by an earlier replay)."""
        return self.accepted + self.already_labeled


class LoopWatch:
    """Samples ``GET /api/v1/loop`` in a thread during the replay; afterwards waits for the loop to catch
    up and says whether it stalled. Needs a user's token (viewer or above)."""

    def __init__(self, api: Api, every: float) -> None:
        self.api = api
        self.every = every
        self.samples: list[dict[str, Any]] = []  # this deployment's lag entries, with "t"
        self.alerts: list[dict[str, str]] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def sample(self) -> dict[str, Any] | None:
        try:
            body = self.api.get("/loop")
        except ApiError:
            self.errors += 1
            return None
        self.alerts = body.get("alerts", [])
        mine = next((d for d in body.get("deployments", []) if d["slug"] == self.api.slug), None)
        if mine is not None:
            self.samples.append({**mine, "t": time.monotonic()})
        return mine

    def settle(self, timeout: float, batch: int) -> dict[str, Any] | None:
        """Wait until no label waits for the memory, at most one window's labels wait for a window, no
        job of the deployment is queued or running (a job whose worker died is failed by the sweeper)
        and no error-level alert stands (a queue without a healthy consumer)."""
        deadline = time.monotonic() + timeout
        last = self.sample()
        while last is not None and time.monotonic() < deadline:
            caught_up = last["pending_labels"] == 0 and last["unwindowed_labels"] <= last["window_events"]
            healthy = not any(a["level"] == "error" for a in self.alerts)  # e.g. a restarted worker is back
            if caught_up and healthy and not last.get("active_jobs"):
                break
            time.sleep(2.0)
            last = self.sample() or last
        return last

    def verdict(self, last: dict[str, Any] | None, batch: int) -> list[str]:
        """Why the loop stalled (empty when it kept up)."""
        if last is None:
            return [f"the loop's state could not be read ({self.errors} failed reads)"]
        reasons = []
        if last["pending_labels"] > 2 * batch:
            reasons.append(f"{last['pending_labels']} labels never reached the error memory")
        if last["unwindowed_labels"] > 2 * last["window_events"]:
            reasons.append(f"{last['unwindowed_labels']} labels are in no closed window")
        if last.get("active_jobs"):
            reasons.append(f"{last['active_jobs']} jobs are still queued or running")
        reasons += [a["message"] for a in self.alerts if a["level"] == "error"]
        return reasons

    def figures(self, last: dict[str, Any] | None) -> dict[str, Any]:
        ages = sorted(float(s["pending_age_s"] or 0.0) for s in self.samples)
        behind = [int(s["unwindowed_labels"]) for s in self.samples]

        def pct(q: float) -> float | None:
            return ages[min(len(ages) - 1, int(q * len(ages)))] if ages else None

        return {
            "samples": len(self.samples),
            "memory_lag_s": {"p50": pct(0.5), "p95": pct(0.95), "max": ages[-1] if ages else None},
            "window_lag_labels_max": max(behind) if behind else None,
            "window_lag_s_max": max((float(s["unwindowed_age_s"] or 0.0) for s in self.samples), default=None),
            "end": last,
            "alerts": self.alerts,
        }


def replay(
    args: argparse.Namespace, api: Api, scored: Scored, tally: Tally, total: int, retrain: Retrain | None
) -> None:
    pending = PendingLabels(args.label_delay)
    if retrain is not None:
        retrain.start()
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
        if retrain is not None:
            if retrain.due(tally, total):
                retrain.request(tally, scored.months[-1])
            retrain.follow()
        if time.monotonic() >= next_progress:
            print(progress_line(scored, tally, total, time.monotonic() - started), flush=True)
            next_progress = time.monotonic() + args.progress
    for labels in pending.due(tally.batches):
        send_labels(labels)
    for labels in pending.drain():  # the file has ended: no prediction is left to wait for them
        send_labels(labels)
    if retrain is not None:
        if not retrain.requested and tally.labels_in >= MIN_RETRAIN_LABELS:
            retrain.request(tally, scored.months[-1] if scored.months else "-")
        retrain.wait(args.retrain_timeout)
        retrain.collect_others()


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
    args: argparse.Namespace,
    scored: Scored,
    tally: Tally,
    api: Api,
    seconds: float,
    interrupted: bool,
    retrain: Retrain | None = None,
    loop: dict[str, Any] | None = None,
) -> tuple[list[str], dict[str, Any]]:
    """The summary as printable lines and as a JSON-ready dict."""
    overall = scored.metrics(range(len(scored.labels)))
    months: dict[str, list[int]] = collections.defaultdict(list)
    for i, month in enumerate(scored.months):
        months[month].append(i)
    per_month = {month: scored.metrics(index) for month, index in sorted(months.items())}
    served: dict[str, list[int]] = collections.defaultdict(list)
    for i, version in enumerate(scored.served_by):
        served[str(version)].append(i)
    per_version = {
        version: {**scored.metrics(index), "from": scored.months[index[0]], "to": scored.months[index[-1]]}
        for version, index in served.items()
    }
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
        "requests": _request_times(api.seconds),
        "versions": {str(v): n for v, n in sorted(scored.versions.items(), key=lambda item: str(item[0]))},
        "memory_revision_first": scored.revisions[0] if scored.revisions else None,
        "memory_revision_last": scored.revisions[-1] if scored.revisions else None,
        # Where the revision stood 90% into the replay: below the last one when the memory kept learning.
        "memory_revision_at_90pct": _at_share(scored.revisions, 0.9),
        "compensated_rows": compensated_rows,
        "batch": args.batch,
        "label_delay": str(args.label_delay),
        "speed": args.speed,
        "overall": overall,
        "months": per_month,
        "per_version": per_version,
        "retrain": retrain.as_dict() if retrain is not None else None,
        "loop": loop,
    }
    rate = tally.rows_sent / seconds if seconds > 0 else 0.0
    versions = ", ".join(f"v{v} x{n}" for v, n in data["versions"].items()) or "-"
    revisions = f"{scored.revisions[0]} -> {scored.revisions[-1]}" if scored.revisions else "not reported"
    lines = [
        "",
        f"== Replay summary: {args.slug}{' (interrupted)' if interrupted else ''}",
        f"rows {tally.rows_sent} in {tally.batches} batches of up to {args.batch}, {seconds:.1f}s ({rate:.0f} rows/s), "
        f"label delay {args.label_delay}, {api.retried} retries; request p50 {data['requests']['p50_ms']} ms, "
        f"p99 {data['requests']['p99_ms']} ms, max {data['requests']['max_ms']} ms",
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
    if len(per_version) > 1 or retrain is not None:
        lines += ["", f"{'version':<8} {'events':>7} {'months':>17} {'base AUC':>9} {'comp AUC':>9} {'delta':>8}"]
        for number, m in per_version.items():
            lines.append(
                f"{'v' + number:<8} {m['n']:>7} {m['from'] + '..' + m['to']:>17} {_fmt(m['base_auc']):>9} "
                f"{_fmt(m['compensated_auc']):>9} {_fmt(m['auc_delta'], signed=True):>8}"
            )
    if retrain is not None:
        lines += retrain.lines()
    if loop is not None:
        lines += loop_lines(loop)
    if tally.rows_sent and compensated_rows == 0:
        lines.append("note: score == base_score on every row: the server did not compensate (off, or memory empty)")
    if tally.already_labeled:
        lines.append(
            f"note: {tally.already_labeled} labels were already stored (an earlier replay of the same ids): "
            "their scores are the ones stored then"
        )
    return lines, data


def _at_share(values: list[int], share: float) -> int | None:
    return values[int(share * (len(values) - 1))] if values else None


def _request_times(seconds: list[float]) -> dict[str, Any]:
    ordered = sorted(seconds)

    def ms(q: float) -> float | None:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1) if ordered else None

    return {"n": len(ordered), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": ms(1.0)}


def loop_lines(loop: dict[str, Any]) -> list[str]:
    """The summary's loop section: lags during the replay, the state at the end, and the verdict."""
    lag, end = loop["memory_lag_s"], loop["end"] or {}

    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}s"

    lines = [
        "",
        f"loop: label-to-memory lag p50 {s(lag['p50'])}, p95 {s(lag['p95'])}, max {s(lag['max'])} "
        f"({loop['samples']} samples); window lag max {loop['window_lag_labels_max'] or 0} labels, "
        f"{s(loop['window_lag_s_max'])}",
        f"loop at the end: {end.get('pending_labels', '?')} labels wait for the memory, "
        f"{end.get('unwindowed_labels', '?')} are in no closed window",
    ]
    if loop["stalled"]:
        lines += ["LOOP STALLED:", *(f"  - {reason}" for reason in loop["stalled"])]
    return lines


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
    parser.add_argument(
        "--loop-every", type=float, default=10.0, help="seconds between reads of the loop's lags (with a token)"
    )
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=180.0,
        help="after the file, seconds to wait for the memory and windows to catch up (default %(default)s)",
    )
    retrain = parser.add_argument_group("retrain (optional; needs an operator's token)")
    retrain.add_argument(
        "--retrain-at",
        type=_fraction,
        default=None,
        metavar="FRACTION",
        help=f"request a retrain once this share of the rows was sent (and {MIN_RETRAIN_LABELS} labels accepted)",
    )
    retrain.add_argument(
        "--token-file",
        type=Path,
        help="file holding an operator's API token, for the retrain and the loop's lags (Authorization: Token)",
    )
    retrain.add_argument(
        "--retrain-params",
        type=_json_object,
        default={},
        help='training overrides as a JSON object, e.g. \'{"epochs": 3, "recent": 3000}\' (default: the server\'s)',
    )
    retrain.add_argument("--retrain-reason", default=None, help="the reason stored in the audit log")
    retrain.add_argument(
        "--retrain-timeout", type=float, default=600.0, help="seconds to wait for the verdict after the replay"
    )
    args = parser.parse_args(argv)
    if args.speed < 0 or not math.isfinite(args.speed):
        parser.error("--speed must be a number >= 0")
    if not args.file.is_file():
        parser.error(f"no replay file {args.file} (bin/up writes it: manage.py demo_setup)")
    if args.retrain_at is not None and not (args.token_file or args.token):
        parser.error("--retrain-at needs an operator's token: --token-file (ingestion keys may not retrain)")
    if args.token_file is not None and not args.token_file.is_file():
        parser.error(f"no token file {args.token_file}")
    return args


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _operator_authorization(args: argparse.Namespace) -> str:
    token = args.token_file.read_text().strip() if args.token_file else args.token
    return f"Token {token}"


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
    retrain = None
    if args.retrain_at is not None:
        operator = Api(args.url, args.slug, _operator_authorization(args), timeout=args.timeout, retries=args.retries)
        reason = args.retrain_reason or f"replay client: retrain after {args.retrain_at:.0%} of {args.file.name}"
        retrain = Retrain(operator, args.retrain_at, args.retrain_params, reason)
    watch = None
    if args.token_file or args.token:
        watch = LoopWatch(
            Api(args.url, args.slug, _operator_authorization(args), timeout=args.timeout, retries=2), args.loop_every
        )
        watch.start()
    scored, tally = Scored(), Tally()
    started = time.monotonic()
    status, interrupted = 0, False
    try:
        replay(args, api, scored, tally, total, retrain)
    except KeyboardInterrupt:
        status, interrupted = 130, True
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        status = 1
    finally:
        api.close()
        if retrain is not None:
            retrain.api.close()
    if status == 0 and retrain is not None and retrain.error is not None:
        status = 1  # asked for, and it did not reach a verdict
    seconds = time.monotonic() - started
    loop: dict[str, Any] | None = None
    if watch is not None:
        watch.stop()
        last = watch.settle(args.settle_timeout, args.batch) if status == 0 else watch.sample()
        watch.api.close()
        loop = {**watch.figures(last), "stalled": watch.verdict(last, args.batch)}
        if status == 0 and loop["stalled"]:
            status = 1  # the replay went through, but the loop did not keep up
    lines, data = summarise(args, scored, tally, api, seconds, interrupted, retrain, loop)
    print("\n".join(lines), flush=True)
    if args.summary_json is not None:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps({**data, "exit_status": status}, indent=1) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
