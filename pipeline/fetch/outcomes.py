"""Fetch outcomes: one JSON line per attempt, the retry schedule across builds, and reading them back."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import orjson
import xxhash

from pipeline.core.config import FetchConfig
from pipeline.core.linkfields import LINK_FIELDS

LEGACY = "outcomes.legacy.jsonl"  # the first layout's single log, once split into partitions
LAYOUT = "partitions.json"


OUTCOMES = "outcomes.jsonl"


TRANSIENT = frozenset({"timeout", "connection_error", "dns_error", "fetch_error", "http_429", "archive_error"})


def is_transient(outcome: str) -> bool:
    """Could a later attempt succeed where this one failed (see the module's docstring)?"""
    return outcome in TRANSIENT or (outcome.startswith("http_5") and len(outcome) == 8)


_STAMP = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def _epoch(stamp: str | None) -> float:
    """Seconds since 1970 of a ``fetched_at`` stamp (YYYY-MM-DDTHH:MM:SSZ); 0.0 when it
    is not one. The stamps webtext writes are read without strptime (~8x cheaper, once
    per outcome line when a fetch resumes); any other form goes through strptime's
    rules as before."""
    m = _STAMP.fullmatch(stamp) if stamp else None
    if m is not None:
        try:
            return datetime(*map(int, m.groups()), tzinfo=timezone.utc).timestamp()
        except ValueError:
            pass  # e.g. a leap second: strptime decides
    try:
        return datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return 0.0


# Final outcomes that only the configuration made final: each with the settings it
# depended on (recorded with the outcome as ``limits``) and whether the configuration
# of this run would answer otherwise. Such a URL is fetched again when it would.
CONFIG_DEPENDENT = frozenset({"refused_private_address", "robots_disallowed", "too_large", "decoded_too_large",
                              "too_many_redirects"})


def limits_of(outcome: str, cfg: FetchConfig) -> dict | None:
    """The settings a config-dependent OUTCOME was decided under (stored in its record)."""
    if outcome in ("too_large", "decoded_too_large"):
        return {"max_bytes": cfg.max_bytes}
    if outcome == "too_many_redirects":
        return {"max_redirects": cfg.max_redirects}
    return None


def config_allows_now(rec: dict, cfg: FetchConfig) -> bool:
    """Would this run's configuration answer a config-dependent outcome otherwise?"""
    o = rec.get("outcome", "")
    lim = rec.get("limits") or {}
    if o == "refused_private_address":
        from urllib.parse import urlsplit

        host = urlsplit("http://" + (rec.get("url_norm") or "")).hostname or ""
        return cfg.allow_private_addresses or host in cfg.resolve or ("www." + host) in cfg.resolve
    if o == "robots_disallowed":
        return not cfg.respect_robots
    if o in ("too_large", "decoded_too_large"):
        return cfg.max_bytes > int(lim.get("max_bytes") or cfg.max_bytes)
    if o == "too_many_redirects":
        return cfg.max_redirects > int(lim.get("max_redirects") or cfg.max_redirects)
    return False


def conditional_summary(log: "OutcomeLog") -> dict:
    """Per config-dependent outcome in LOG: the smallest limit it was decided under (True
    where it has none), for a later build to know, without reading the log, whether its
    configuration may answer one of them otherwise (``recheck_due``)."""
    out: dict = {}
    for url_norm, lim in log.conditional.items():
        o = log.done[url_norm][0]
        v = min(lim.values()) if lim else None
        if v is not None:
            out[o] = min(out[o], v) if isinstance(out.get(o), int) else v
        else:
            out.setdefault(o, True)
    return out


def recheck_due(summary: dict | None, cfg: FetchConfig) -> bool:
    """May this configuration answer one of a partition's config-dependent outcomes
    (``conditional_summary``) otherwise? (Then the partition runs, to look.)"""
    for o, v in (summary or {}).items():
        if o == "refused_private_address" and (cfg.allow_private_addresses or cfg.resolve):
            return True
        if o == "robots_disallowed" and not cfg.respect_robots:
            return True
        if o in ("too_large", "decoded_too_large") and v is not True and cfg.max_bytes > v:
            return True
        if o == "too_many_redirects" and v is not True and cfg.max_redirects > v:
            return True
    return False


def retry_state(rec: dict, cfg: FetchConfig, now: float, retry_failed: bool = False) -> str:
    """What a run does with a URL whose last outcome is ``rec``: ``already_fetched``
    (final), ``retry`` (transient, back-off passed; or config-dependent and this run's
    configuration would answer otherwise), ``waiting_retry`` or ``given_up``."""
    if rec.get("outcome") in CONFIG_DEPENDENT:
        return "retry" if config_allows_now(rec, cfg) else "already_fetched"
    if not is_transient(rec.get("outcome", "")):
        return "already_fetched"
    if retry_failed:
        return "retry"
    attempts = int(rec.get("attempt") or 1)
    if attempts >= cfg.max_attempts:
        return "given_up"
    at = rec["fetched_epoch"] if "fetched_epoch" in rec else _epoch(rec.get("fetched_at"))
    due = at + cfg.retry_after_s * 2 ** (attempts - 1)
    return "retry" if now >= due else "waiting_retry"




























class OutcomeLog:
    """``outcomes.jsonl``: one line per attempt, appended and fsynced; the resume point.

    In memory only what resuming needs, per URL: (outcome, attempt, fetch time) of
    its last line (~150 bytes a URL), read line by line; the full records stay on
    disk (``read_outcomes``)."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.done: dict[str, tuple[str, int, float]] = {}
        # url_norm -> "archive:<name>" for the URLs whose last outcome is a page from
        # an archive (the others' pages, if any, came live)
        self.archived: dict[str, str] = {}
        # url_norm -> (id, url, created_utc, Reddit fields) of the URLs whose last outcome is
        # transient: a build that reads only the new links retries them from here
        self.retry_rows: dict[str, tuple] = {}
        # url_norm -> the limits a config-dependent outcome was decided under (CONFIG_DEPENDENT)
        self.conditional: dict[str, dict | None] = {}
        # The end of the last record of each WARC file that any line (not only a URL's
        # last) points at: a superseded attempt's record is still part of its file.
        self.warc_ends: dict[str, int] = defaultdict(int)
        outcomes: dict[str, str] = {}  # one string object per distinct outcome
        if path.is_file():
            good_end = 0
            torn = False
            with open(path, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        torn = True
                        break  # a torn last line of a killed run
                    try:
                        rec = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        torn = True
                        break
                    self._remember(rec, outcomes)
                    good_end += len(line)
            if torn:
                with open(path, "r+b") as fh:
                    fh.truncate(good_end)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "ab")

    def _remember(self, rec: dict, outcomes: dict | None = None) -> None:
        o = rec["outcome"]
        if outcomes is not None:
            o = outcomes.setdefault(o, o)
        self.done[rec["url_norm"]] = (o, int(rec.get("attempt") or 1), _epoch(rec.get("fetched_at")))
        if o in CONFIG_DEPENDENT:  # (few URLs): what deciding it again needs
            self.conditional[rec["url_norm"]] = rec.get("limits")
        else:
            self.conditional.pop(rec["url_norm"], None)
        src = rec.get("source")
        if o == "ok" and src and src != "live":
            self.archived[rec["url_norm"]] = sys.intern(src)
        else:
            self.archived.pop(rec["url_norm"], None)
        if is_transient(o) or o in CONFIG_DEPENDENT:  # what retrying it needs when no link row names it again
            self.retry_rows[rec["url_norm"]] = (rec.get("id"), rec["url"], rec.get("created_utc"),
                                                {f: rec[f] for f in LINK_FIELDS if rec.get(f) is not None} or None)
        else:
            self.retry_rows.pop(rec["url_norm"], None)
        self._note_end(rec)

    def state(self, url_norm: str) -> dict | None:
        """{outcome, attempt, fetched_epoch} of the URL's last attempt, or None."""
        t = self.done.get(url_norm)
        if t is None:
            return None
        out = {"outcome": t[0], "attempt": t[1], "fetched_epoch": t[2], "url_norm": url_norm}
        if url_norm in self.conditional:
            out["limits"] = self.conditional[url_norm]
        return out

    def add(self, rec: dict) -> None:
        line = orjson.dumps(rec) + b"\n"
        with self.lock:
            self.fh.write(line)
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self._remember(rec)

    def _note_end(self, rec: dict) -> None:
        for r in [rec] + rec.get("warc_trail", []):
            if r.get("warc_file") and r.get("warc_record_end"):
                self.warc_ends[r["warc_file"]] = max(self.warc_ends[r["warc_file"]], r["warc_record_end"])

    def close(self) -> None:
        self.fh.close()


def outcome_files(fetch_dir: str | Path) -> list[Path]:
    """The append-only outcome logs of a fetch directory: the first layout's single
    log (kept as outcomes.legacy.jsonl once split), then each partition's."""
    d = Path(fetch_dir)
    files = [p for p in (d / OUTCOMES, d / LEGACY) if p.is_file()]
    return files + sorted((d / "outcomes").glob("part-*.jsonl"))




def _count_outcomes(outcomes: Iterable[str]) -> dict[str, int]:
    c: dict[str, int] = defaultdict(int)
    for o in outcomes:
        c[o] += 1
    return dict(sorted(c.items(), key=lambda kv: -kv[1]))


def read_outcomes(fetch_dir: str | Path) -> dict[str, dict]:
    """{url_norm: its last outcome record} over every outcome log of FETCH_DIR (in memory:
    for tests and small directories; the stages stream the logs)."""
    out: dict[str, dict] = {}
    for p in outcome_files(fetch_dir):
        for line in p.read_bytes().splitlines():
            if line.strip():
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                out[rec["url_norm"]] = rec
    return out


def host_partition(url_norm: str, n: int) -> int:
    """The partition of a normalised URL: a stable hash of its host (xxh64) mod N."""
    return xxhash.xxh64_intdigest(url_norm.split("/", 1)[0].encode("utf-8", "surrogatepass")) % n


# The all-runs figures a partition records beside its log (outcomes/part-PPPP.state.json),
# which combine_fetch adds for partitions that had nothing to do in a build.
PARTITION_STATE = ("waiting_retry", "given_up", "ok_all_runs", "outcomes_all_runs", "ok_by_source_all_runs")
