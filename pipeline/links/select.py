"""Which submissions become links: the blocklist, the karma rule, the date window, one row per normalised URL."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.core.config import LinksConfig
from pipeline.core.schema import LINKS_SCHEMA
from pipeline.core.summary import RunSummary
from pipeline.core.urls import (
    REDDIT_DOMAINS,
    InvalidURL,
    host_matches,
    url_forms,
    url_id,
)
from pipeline.sources.dumps import (
    Submission,
    created_ts,
)

BLOCKLIST_PATH = Path(__file__).parent.parent / "data" / "url_blocklist.txt"


@dataclass(frozen=True)
class Blocklist:
    domains: frozenset[str]
    extensions: frozenset[str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Blocklist":
        path = Path(path) if path else BLOCKLIST_PATH
        domains: set[str] = set()
        exts: set[str] = set()
        section = None
        for lineno, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.split("#", 1)[0].strip().lower()
            if not line:
                continue
            if line in ("[domains]", "[extensions]"):
                section = line[1:-1]
            elif section == "domains":
                domains.add(line)
            elif section == "extensions":
                exts.add(line.lstrip("."))
            else:
                raise ValueError(f"{path}:{lineno}: entry {line!r} before a [domains] or [extensions] header")
        return cls(frozenset(domains), frozenset(exts))

    def reason(self, host: str, path: str) -> str | None:
        if host_matches(host, self.domains):
            return "media_host"
        last = path.rsplit("/", 1)[-1]
        if "." in last and last.rsplit(".", 1)[-1].lower() in self.extensions:
            return "media_extension"
        return None


class LinkSelector:
    """Applies the selection rules to submissions and aggregates them per URL.

    ``from_list=True`` (entries of a URL list): an entry without a score is not
    held to the karma rule and keeps a null score, one without a date passes the
    date window; the list's maker filtered them."""

    def __init__(self, cfg: LinksConfig, summary: RunSummary | None = None, from_list: bool = False):
        self.cfg = cfg
        self.from_list = from_list
        self.summary = summary or RunSummary("links", unit="submissions")
        self.blocklist = Blocklist.load(cfg.blocklist_path)
        self.after = cfg.after_ts
        self.before = cfg.before_ts
        # Columns, not a dict per URL: the URLs in first-seen order (url_norm -> number),
        # and one entry per accepted submission in each flat list; ``table`` groups them
        # in Arrow. Host verdicts (blocklisted, Reddit) are cached per host.
        self._index: dict[str, int] = {}
        self._urls: list[str] = []
        self._keys: list[str] = []
        self._hosts: list[str] = []
        self._of: list[int] = []  # the URL number of each submission
        self._ids: list[str] = []
        self._subs: list[str] = []
        self._created: list[int] = []
        self._titles: list[str] = []
        self._scores: list[int | None] = []
        self._host_kind: dict[str, str] = {}

    @property
    def n_urls(self) -> int:
        return len(self._keys)

    def add(self, s: Submission) -> None:
        summary = self.summary
        summary.n_in += 1
        reason = self._reason(s)
        if reason is not None:
            summary.dropped[reason] += 1
            return
        key = self._key
        i = self._index.get(key)
        if i is None:
            i = self._index[key] = len(self._keys)
            self._keys.append(key)
            self._urls.append(self._url)
            self._hosts.append(self._host)
        self._of.append(i)
        self._ids.append(s.id or "")
        self._subs.append(s.subreddit or "")
        self._created.append(self._created_ts or 0)
        self._titles.append(s.title or "")
        self._scores.append(s.score if s.score is not None else (None if self.from_list else 0))

    def _reason(self, s: Submission) -> str | None:
        cfg = self.cfg
        raw_url = s.url_overridden_by_dest or s.url
        if not raw_url:
            return "missing_url"
        if cfg.exclude_self_posts and s.is_self:
            return "self_post"
        if cfg.exclude_nsfw and s.over_18:
            return "nsfw"
        created = self._created_ts = created_ts(s.created_utc)
        if self.after is not None or self.before is not None:
            if created is None:
                if not self.from_list:
                    return "missing_created_utc"
            elif (self.after is not None and created < self.after) or (self.before is not None and created >= self.before):
                return "outside_date_window"
        if raw_url.startswith("/"):  # "/r/sub/comments/..." relative permalinks
            return "crosspost" if s.crosspost_parent else "reddit_internal"
        if cfg.score_mode == "max" and not (s.score is None and self.from_list):
            if s.score is None:
                return "score_missing"
            if s.score < cfg.min_score:
                return "low_score"
        try:
            url, key = url_forms(raw_url)
        except InvalidURL:
            return "invalid_url"
        host = key.split("/", 1)[0].split(":", 1)[0]
        kind = self._host_kind.get(host)
        if kind is None:
            kind = ("media_host" if host_matches(host, self.blocklist.domains)
                    else "reddit" if host_matches(host, REDDIT_DOMAINS) else "")
            if len(self._host_kind) < HOST_CACHE:
                self._host_kind[host] = kind
        if kind == "media_host":
            return kind
        last = key[len(host):].split("?", 1)[0].rsplit("/", 1)[-1]
        if "." in last and last.rsplit(".", 1)[-1].lower() in self.blocklist.extensions:
            return "media_extension"
        if kind == "reddit":
            return "crosspost" if s.crosspost_parent else "reddit_internal"
        self._url, self._key, self._host = url, key, host
        return None

    def table(self, per_url_rules: bool = True) -> pa.Table:
        """The unique URLs as a LINKS_SCHEMA table sorted by (created_utc, url_norm),
        after the per-URL rules; adds the merge/total drops to the summary.

        ``per_url_rules=False``: every URL, no per-URL drops, ``n_out`` left alone
        (a per-dump part, merged with the other months later)."""
        n = len(self._keys)
        of = np.array(self._of, np.int64)
        keep_sub = first_submissions(of, pa.array(self._ids, pa.string()))
        if not keep_sub.all():
            # the same Reddit submission twice in one input (a repeated line, a re-upload
            # appended): counted once, its repeats dropped with their reason
            self.summary.drop("duplicate_submission", int((~keep_sub).sum()))
            idx = np.flatnonzero(keep_sub)
            of = of[idx]
            self._ids = [self._ids[i] for i in idx]
            self._subs = [self._subs[i] for i in idx]
            self._created = [self._created[i] for i in idx]
            self._titles = [self._titles[i] for i in idx]
            self._scores = [self._scores[i] for i in idx]
            self._of = of.tolist()
        order = np.argsort(of, kind="stable")  # each URL's submissions together, in reading order
        counts = np.bincount(of, minlength=n)
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
        starts = offsets[:-1]
        take = pa.array(order)
        scores = pa.array(self._scores, pa.int64()).take(take)
        created = np.array(self._created, np.int64)[order]
        cols = {
            "id": pa.array([url_id(k) for k in self._keys], pa.string()),
            "url": pa.array(self._urls, pa.string()),
            "url_norm": pa.array(self._keys, pa.string()),
            "domain": pa.array(self._hosts, pa.string()),
            "score": _reduce_ints(scores, starts, "max") if n else pa.array([], pa.int64()),
            "score_total": _reduce_ints(scores, starts, "sum") if n else pa.array([], pa.int64()),
            "n_submissions": pa.array(counts, pa.int32()),
            "created_utc": pa.array(_first_nonzero_min(created, starts) if n else [], pa.int64()),
        }
        for name, values, typ in (("reddit_ids", self._ids, pa.string()), ("subreddits", self._subs, pa.string()),
                                  ("created_utcs", created, pa.int64()), ("titles", self._titles, pa.string()),
                                  ("scores", scores, pa.int64())):
            flat = values if name == "scores" else (pa.array(values, typ) if name == "created_utcs"
                                                    else pa.array(values, typ).take(take))
            cols[name] = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat)
        t = pa.table(cols, schema=LINKS_SCHEMA)
        if per_url_rules:
            summary = self.summary
            keep = np.ones(n, bool)
            if self.cfg.score_mode == "sum" and n:
                below = pc.fill_null(pc.less(t.column("score_total"), self.cfg.min_score), False).to_numpy(zero_copy_only=False)
                if below.any():
                    summary.drop("low_score_total", int(counts[below].sum()))
                keep = ~below
            dups = int((counts[keep] - 1).sum())
            if dups:
                summary.drop("duplicate_url", dups)
            t = t.filter(pa.array(keep))
            summary.n_out = t.num_rows
        return t.take(pc.sort_indices(t, [("created_utc", "ascending"), ("url_norm", "ascending")])) if t.num_rows else t

    def rows(self, per_url_rules: bool = True) -> list[dict]:
        """``table`` as a list of dicts."""
        return self.table(per_url_rules).to_pylist()


HOST_CACHE = 1 << 20  # hosts whose blocklist/Reddit verdict is cached (~100 B each)


def first_submissions(group: np.ndarray, ids: pa.Array) -> np.ndarray:
    """A mask over submissions (GROUP: each one's URL group, IDS: its Reddit id): True
    for the first of each (group, id), and for every submission without an id (a URL
    list's entries): the same submission read from two inputs, or twice from one, counts
    once. Vectorised: no Python object per submission."""
    n = len(ids)
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    ids = pc.fill_null(ids, "")
    enc = pc.dictionary_encode(ids).combine_chunks() if isinstance(ids, pa.ChunkedArray) else pc.dictionary_encode(ids)
    codes = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    empty = (pc.equal(ids, "").to_numpy(zero_copy_only=False)) if len(enc.dictionary) else np.ones(n, bool)
    combined = np.asarray(group, np.int64) * (len(enc.dictionary) + 1) + codes
    _, first = np.unique(combined, return_index=True)
    keep[:] = False
    keep[first] = True
    keep |= empty
    return keep


def _reduce_ints(values: pa.Array, starts: np.ndarray, how: str) -> pa.Array:
    """Per group (rows from each of STARTS to the next): the max of the known values
    (null when none is known), or the sum (null once one is unknown)."""
    isnull = values.is_null().to_numpy(zero_copy_only=False)
    if how == "max":
        v = pc.fill_null(values, np.iinfo(np.int64).min).to_numpy().astype(np.int64)
        return pa.array(np.maximum.reduceat(v, starts), pa.int64(), mask=np.add.reduceat(~isnull, starts) == 0)
    v = pc.fill_null(values, 0).to_numpy().astype(np.int64)
    return pa.array(np.add.reduceat(v, starts), pa.int64(), mask=np.add.reduceat(isnull, starts) > 0)


def _first_nonzero_min(created: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per group: the earliest known time (0: unknown)."""
    big = np.iinfo(np.int64).max
    m = np.minimum.reduceat(np.where(created > 0, created, big), starts)
    return np.where(m == big, 0, m)
