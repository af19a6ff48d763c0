"""Which submissions become links: the blocklist, the karma rule, the date window, one row per normalised URL.

A dump's submissions come a chunk at a time (``LinkSelector.add_batch``): the cheap
rules in one Python pass, the URLs of the candidates normalised in Arrow batches
(``url_forms_arrow``), the accepted ones kept as Arrow columns and grouped by URL in
Arrow and numpy; ``LinkSelector.add``, one submission at a time, is the reference
they are tested against (tests/pipeline/test_links_fast.py) and what URL lists and the
API use."""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import attrgetter
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
    url_forms_arrow,
    url_ids_arrow,
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

    ``add`` takes one submission, ``add_batch`` a list of them (a chunk of a dump):
    the same rules with the same result, ``add_batch`` with one Python pass over the
    records for the cheap rules and the URLs normalised in Arrow (``url_forms_arrow``;
    the URLs of another shape one by one, as ``add`` does).

    ``from_list=True`` (entries of a URL list): an entry without a score is not
    held to the karma rule and keeps a null score, one without a date passes the
    date window; the list's maker filtered them."""

    def __init__(self, cfg: LinksConfig, summary: RunSummary | None = None, from_list: bool = False):
        self.cfg = cfg
        self.from_list = from_list
        self.summary = summary or RunSummary("links", unit="submissions")
        self.blocklist = Blocklist.load(cfg.blocklist_path)
        self._ext_regex = _extension_regex(self.blocklist.extensions)
        self.after = cfg.after_ts
        self.before = cfg.before_ts
        # Columns, not a dict per URL: one entry per accepted submission (its URL's key,
        # clean URL and host, id, subreddit, time, title, score), as Arrow chunks;
        # ``add`` gathers rows in ``_rows`` until the next chunk is made. ``table``
        # numbers the URLs in first-seen order and groups them in Arrow. Host verdicts
        # (blocklisted, Reddit) are cached per host.
        self._chunks: list[list[pa.Array]] = []
        self._rows: list[list] = [[] for _ in _COLUMNS]
        self._host_kind: dict[str, str] = {}
        # ``add_batch``'s candidates waiting for ``_resolve`` (submission, raw URL, time,
        # position among the submissions read) and its drops not counted yet
        self._pending: tuple[list, list, list, list] = ([], [], [], [])
        self._pending_drops: dict[str, list[int]] = {}

    @property
    def n_urls(self) -> int:
        self._resolve()
        self._flush()
        return len(pc.unique(self._column("key"))) if self._chunks else 0

    def add(self, s: Submission) -> None:
        if self._pending[0] or self._pending_drops:
            self._resolve()
        summary = self.summary
        summary.n_in += 1
        reason = self._reason(s)
        if reason is not None:
            summary.dropped[reason] += 1
            return
        key, url, host, ids, subs, created, titles, scores = self._rows
        key.append(self._key)
        url.append(self._url)
        host.append(self._host)
        ids.append(s.id or "")
        subs.append(s.subreddit or "")
        created.append(self._created_ts or 0)
        titles.append(s.title or "")
        scores.append(s.score if s.score is not None else (None if self.from_list else 0))

    def _flush(self) -> None:
        """The rows ``add`` gathered, as a chunk."""
        if self._rows[0]:
            self._chunks.append([pa.array(v, t) for v, t in zip(self._rows, _TYPES)])
            self._rows = [[] for _ in _COLUMNS]

    def _column(self, name: str) -> pa.Array:
        i = _COLUMNS.index(name)
        arrays = [c[i] for c in self._chunks]
        return arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)

    def _reason(self, s: Submission) -> str | None:
        reason = self._pre_reason(s)
        if reason is not None:
            return reason
        return self._url_reason(s.url_overridden_by_dest or s.url, s)

    def _pre_reason(self, s: Submission) -> str | None:
        """The rules before the URL's normalisation (sets ``_created_ts``)."""
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
        return None

    def _kind(self, host: str) -> str:
        """The verdict on a host (media_host, reddit, or "" for neither), cached."""
        kind = self._host_kind.get(host)
        if kind is None:
            kind = ("media_host" if host_matches(host, self.blocklist.domains)
                    else "reddit" if host_matches(host, REDDIT_DOMAINS) else "")
            if len(self._host_kind) < HOST_CACHE:
                self._host_kind[host] = kind
        return kind

    def _url_reason(self, raw_url: str, s: Submission) -> str | None:
        """The rules on the normalised URL (sets ``_url``, ``_key``, ``_host``)."""
        try:
            url, key = url_forms(raw_url)
        except InvalidURL:
            return "invalid_url"
        host = key.split("/", 1)[0].split(":", 1)[0]
        kind = self._kind(host)
        if kind == "media_host":
            return kind
        last = key[len(host):].split("?", 1)[0].rsplit("/", 1)[-1]
        if "." in last and last.rsplit(".", 1)[-1].lower() in self.blocklist.extensions:
            return "media_extension"
        if kind == "reddit":
            return "crosspost" if s.crosspost_parent else "reddit_internal"
        self._url, self._key, self._host = url, key, host
        return None

    def add_batch(self, subs: list[Submission]) -> None:
        """``add`` of each of SUBS, in order, with the same result (rows, counts, and
        the order in which drop reasons first appear). The submissions that pass the
        cheap rules wait in ``_pending`` until URL_BATCH of them are normalised at once
        (``_resolve``); ``table`` and ``add`` resolve what waits first."""
        if self.from_list:
            for s in subs:
                self.add(s)
            return
        base = self.summary.n_in  # the position of SUBS[0] among the submissions read
        self.summary.n_in += len(subs)
        cfg = self.cfg
        ex_self, ex_nsfw = cfg.exclude_self_posts, cfg.exclude_nsfw
        # the date window as float bounds; 0 <= created (a negative time truncates
        # towards 0, which ``add`` takes through created_ts)
        lo = 0.0 if self.after is None else max(0, self.after)
        hi = math.inf if self.before is None else self.before
        by_score = cfg.score_mode == "max"
        min_score = cfg.min_score
        pre = self._pre_reason
        drops = self._pending_drops  # reason -> [position of its first drop, count]
        cand, raws, created, pos = self._pending
        for i, s in enumerate(subs):
            u = s.url_overridden_by_dest or s.url
            c = s.created_utc
            # the common case in one test: a URL, not a self post, not NSFW, a float
            # time inside the window, not a relative link; anything else by ``add``'s rules
            if (u and c.__class__ is float and lo <= c < hi and not (ex_self and s.is_self)
                    and not (ex_nsfw and s.over_18) and u[0] != "/"):
                if by_score:
                    sc = s.score
                    if sc is None or sc < min_score:
                        r = "score_missing" if sc is None else "low_score"
                        d = drops.get(r)
                        if d is None:
                            drops[r] = [base + i, 1]
                        else:
                            d[1] += 1
                        continue
                cand.append(s)
                raws.append(u)
                created.append(c)  # truncated in _urls_batch, as created_ts does (0 <= c)
                pos.append(base + i)
                continue
            r = pre(s)
            if r is None:
                cand.append(s)
                raws.append(u)
                created.append(self._created_ts or 0)
                pos.append(base + i)
            else:
                d = drops.get(r)
                if d is None:
                    drops[r] = [base + i, 1]
                else:
                    d[1] += 1
        if len(cand) >= URL_BATCH:
            self._resolve()

    def flush(self) -> None:
        """Finish what ``add_batch`` left waiting: every submission given so far is then
        counted in the summary."""
        self._resolve()

    def _resolve(self) -> None:
        """The URL rules of the waiting candidates, in Arrow: the accepted ones become a
        chunk, the others are counted; then every waiting drop is counted, in the order
        of the first submission of each reason."""
        cand, raws, created, pos = self._pending
        drops = self._pending_drops
        if cand:
            self._flush()
            self._urls_batch(cand, raws, created, pos, drops)
            self._pending = ([], [], [], [])
        if drops:
            dropped = self.summary.dropped
            for r, (_, n) in sorted(drops.items(), key=lambda kv: kv[1][0]):
                dropped[r] += n
            drops.clear()

    def _urls_batch(self, cand: list[Submission], raws: list[str], created: list[float], pos: list[int],
                    drops: dict[str, list[int]]) -> None:
        n = len(cand)
        fast, clean, key, host, key_path = url_forms_arrow(pa.array(raws, pa.string()))
        code = np.zeros(n, np.int8)  # an index into _URL_REASONS; 0: accepted
        where = np.full(n, -1, np.int64)  # each candidate's row in the forms (fast ones, then slow ones)
        where[fast] = np.arange(fast.size)
        if fast.size:
            enc = pc.dictionary_encode(host)
            kinds = np.array([_KIND_CODE[self._kind(h)] for h in enc.dictionary.to_pylist()], np.int8)
            kind = kinds[enc.indices.to_numpy(zero_copy_only=False)]
            media_ext = (pc.match_substring_regex(key_path, self._ext_regex).to_numpy(zero_copy_only=False)
                         if self._ext_regex else np.zeros(fast.size, bool))
            code[fast] = np.where(kind == 1, 1, np.where(media_ext, 2, np.where(kind == 2, 3, 0)))
            for j in fast[kind == 2]:  # Reddit's own links: a crosspost or not
                if code[j] == 3 and not cand[j].crosspost_parent:
                    code[j] = 4
        slow_values: list[tuple[str, str, str]] = []  # (clean, key, host) of the slow ones accepted
        if fast.size < n:
            is_fast = np.zeros(n, bool)
            is_fast[fast] = True
            for j in np.flatnonzero(~is_fast):
                r = self._url_reason(raws[j], cand[j])
                if r is None:
                    where[j] = fast.size + len(slow_values)
                    slow_values.append((self._url, self._key, self._host))
                else:
                    code[j] = _URL_REASONS.index(r)
        for c in np.flatnonzero(np.bincount(code, minlength=len(_URL_REASONS))[1:]) + 1:
            hit = code == c
            d = drops.get(_URL_REASONS[c])
            if d is None:
                drops[_URL_REASONS[c]] = d = [pos[int(np.argmax(hit))], 0]
            d[1] += int(hit.sum())
        keep = np.flatnonzero(code == 0)
        if not keep.size:
            return
        if slow_values:
            clean, key, host = (pa.concat_arrays([arr, pa.array(list(vals), pa.string())])
                                for arr, vals in zip((clean, key, host), zip(*slow_values)))
        rows = where[keep]
        if rows.size < len(key) or (rows != np.arange(rows.size)).any():
            take = pa.array(rows)
            clean, key, host = clean.take(take), key.take(take), host.take(take)
        created = np.asarray(created, np.float64).astype(np.int64)  # times below 2100: exact
        if keep.size < n:
            created = created[keep]
            cand = [cand[j] for j in keep]
        self._chunks.append([
            key, clean, host,
            pc.fill_null(pa.array(list(map(_ID, cand)), pa.string()), ""),
            pc.fill_null(pa.array(list(map(_SUBREDDIT, cand)), pa.string()), ""),
            pa.array(created, pa.int64()),
            pc.fill_null(pa.array(list(map(_TITLE, cand)), pa.string()), ""),
            pc.fill_null(pa.array(list(map(_SCORE, cand)), pa.int64()), 0),
        ])

    def table(self, per_url_rules: bool = True) -> pa.Table:
        """The unique URLs as a LINKS_SCHEMA table sorted by (created_utc, url_norm),
        after the per-URL rules; adds the merge/total drops to the summary.

        ``per_url_rules=False``: every URL, no per-URL drops, ``n_out`` left alone
        (a per-dump part, merged with the other months later)."""
        self._resolve()
        self._flush()
        if not self._chunks:
            self._chunks.append([pa.array([], t) for t in _TYPES])
        if len(self._chunks) > 1:
            self._chunks = [[self._column(name) for name in _COLUMNS]]
        key_all, url_all, host_all, ids, subs, created_all, titles, scores_all = self._chunks[0]
        enc = pc.dictionary_encode(key_all)  # codes in first-seen order
        of = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        keys = enc.dictionary
        n = len(keys)
        keep_sub = first_submissions(of, ids)
        if not keep_sub.all():
            # the same Reddit submission twice in one input (a repeated line, a re-upload
            # appended): counted once, its repeats dropped with their reason
            self.summary.drop("duplicate_submission", int((~keep_sub).sum()))
            sel = pa.array(np.flatnonzero(keep_sub))
            self._chunks = [[a.take(sel) for a in self._chunks[0]]]
            key_all, url_all, host_all, ids, subs, created_all, titles, scores_all = self._chunks[0]
            of = of[keep_sub]  # the first submission of every URL stays: its codes stay
        created_np = created_all.to_numpy(zero_copy_only=False).astype(np.int64)
        counts = np.bincount(of, minlength=n)
        first_created = np.zeros(0, np.int64)
        if n:
            # the URLs numbered in the table's final order, (created_utc, url_norm), before
            # the list columns are made: no sort of the finished table (a take of its list
            # columns) at the end
            order = np.argsort(of, kind="stable")
            first_created = _first_nonzero_min(created_np[order], np.r_[0, np.cumsum(counts)[:-1]])
            perm = pc.sort_indices(pa.table({"c": first_created, "k": keys}),
                                   [("c", "ascending"), ("k", "ascending")]).to_numpy()
            if (perm != np.arange(n)).any():
                rank = np.empty(n, np.int64)
                rank[perm] = np.arange(n)
                of = rank[of]
                keys, counts, first_created = keys.take(pa.array(perm)), counts[perm], first_created[perm]
        order = np.argsort(of, kind="stable")  # each URL's submissions together, in reading order
        offsets = np.r_[0, np.cumsum(counts)].astype(np.int32)
        starts = offsets[:-1]
        take = pa.array(order)
        first = pa.array(order[starts]) if n else pa.array([], pa.int64())  # each URL's first submission
        urls, hosts = url_all.take(first), host_all.take(first)
        scores = scores_all.take(take)
        created = created_np[order]
        cols = {
            "id": url_ids_arrow(keys),
            "url": urls,
            "url_norm": keys,
            "domain": hosts,
            "score": _reduce_ints(scores, starts, "max") if n else pa.array([], pa.int64()),
            "score_total": _reduce_ints(scores, starts, "sum") if n else pa.array([], pa.int64()),
            "n_submissions": pa.array(counts, pa.int32()),
            "created_utc": pa.array(first_created, pa.int64()),
        }
        for name, values in (("reddit_ids", ids), ("subreddits", subs), ("created_utcs", created),
                             ("titles", titles), ("scores", scores)):
            flat = values if name == "scores" else (pa.array(values, pa.int64()) if name == "created_utcs"
                                                    else values.take(take))
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
        return t  # already in (created_utc, url_norm) order

    def rows(self, per_url_rules: bool = True) -> list[dict]:
        """``table`` as a list of dicts."""
        return self.table(per_url_rules).to_pylist()


_ID, _SUBREDDIT, _TITLE, _SCORE = (attrgetter(f) for f in ("id", "subreddit", "title", "score"))
# the columns of the accepted submissions (``LinkSelector._chunks``)
_COLUMNS = ("key", "url", "host", "id", "subreddit", "created_utc", "title", "score")
_TYPES = (pa.string(),) * 5 + (pa.int64(), pa.string(), pa.int64())
_URL_REASONS = (None, "media_host", "media_extension", "crosspost", "reddit_internal", "invalid_url")
_KIND_CODE = {"": 0, "media_host": 1, "reddit": 2}
URL_BATCH = 16384  # candidates normalised at once (Arrow's per-call cost spread over many URLs)
HOST_CACHE = 1 << 20  # hosts whose blocklist/Reddit verdict is cached (~100 B each)


def _extension_regex(extensions) -> str | None:
    """A regex (RE2) that matches an ASCII key path whose last segment has a "." and,
    after its last ".", one of EXTENSIONS in any case: ``_url_reason``'s extension rule
    for the paths of ``url_forms_arrow`` (ASCII). An extension with "." or "/" never
    matches there (it is looked up after the last "."), nor one with a non-ASCII
    character (the lowercase of an ASCII path is ASCII); on an ASCII text, RE2's (?i)
    pairs only ASCII letters. Every character but a letter or digit is written \\xHH."""
    exts = sorted(e for e in extensions if e.isascii() and "." not in e and "/" not in e)
    if not exts:
        return None
    lit = "".join
    return r"(?i)\.(?:" + "|".join(lit(c if c.isalnum() else f"\\x{ord(c):02x}" for c in e) for e in exts) + r")$"


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
    if len(enc.dictionary) == n:  # every id once: every (group, id) once
        return keep
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
