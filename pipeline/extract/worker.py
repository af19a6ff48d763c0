"""One page -> its main text (``extract_page``), and the pool worker that extracts a WARC record with a time limit."""

from __future__ import annotations

import signal
from dataclasses import asdict, replace
from typing import Iterator

from pipeline.core.config import ExtractConfig
from pipeline.core.html import decode_content_encoding, decode_html
from pipeline.core.pool import TaskFailed, TaskPool, WorkerStartError
from pipeline.core.summary import RunSummary
from pipeline.core.urls import InvalidURL, normalize_url
from pipeline.extract.consent import strip_banners
from pipeline.extract.expand import (
    DEDUP_MIN_WORDS,
    declares_article,
    declares_product,
    drop_repeated_lines,
    drop_id_runs,
    drop_title_line,
    expand_to_container,
    rescue_short_extraction,
)
from pipeline.extract.forms import drop_form_lines
from pipeline.extract.forum import declares_thread, forum_posts
from pipeline.extract.gate import extract_gated
from pipeline.extract.items import add_missed_grid, drop_related_items
from pipeline.extract.page import id_class_values, page_date, page_title


# An extraction of fewer words than this (by default: none at all) is read again in
# trafilatura's recall mode, which keeps more of what its precision rules drop: a page
# whose whole body sits inside an unclosed pop-up <aside> (its main text then counts as
# an aside), for one. Chosen on wcxb dev and checked on each half
# (bench/bench_thread_folds.py); on an empty text the second reading costs one more
# extraction of that page.
RECALL_BELOW_WORDS = 1


def extract_page(html: str, url: str | None, cfg: ExtractConfig,
                 steps: dict[str, int] | None = None, title: str | None = None) -> tuple[str | None, str | None]:
    """(main text, publication date) from one parse of the page: the date is read
    from the tree first (``page_date``; it does not change it), then consent banners
    and subscription prompts are removed (``strip_banners``), and on a page selling one
    product the cards of other products around it (``drop_related_items``, with
    ``cfg.drop_related_items``); a forum thread or Q&A
    page whose engine marks its posts then gives its posts (``forum_posts``, with
    ``cfg.forum_posts``; a page that declares a thread in markup no engine there uses
    is read with trafilatura's comments); any other page goes to trafilatura (on the same tree:
    identical output to passing the HTML string, measured on aeb; a text of fewer
    than RECALL_BELOW_WORDS words is read again with favor_recall, with ``cfg.rescue``),
    an extraction that kept little of a non-article page is rescued (``rescue_short_extraction``,
    with ``cfg.rescue``), and on a page that declares neither an article nor a
    product the extraction is widened to its container (``expand_to_container``,
    with ``cfg.expand``); on a page that declares no article and holds no code, lines
    repeating an earlier line leave (``drop_repeated_lines``, with ``cfg.dedup_lines``);
    the cards of a listing's grid the text lacks are added below it
    (``add_missed_grid``, with ``cfg.add_missed_grid``); on every text, lines made of
    machine ids leave (``drop_id_runs``, with ``cfg.drop_id_runs``) and so do form and
    newsletter lines (``drop_form_lines``, with ``cfg.strip_forms``); last, a first line that
    repeats the page's title (TITLE, else ``page_title``) is dropped unless
    ``cfg.title_line``. STEPS, when given,
    gets what the steps did for the run's summary: consent_removed / paywall_removed
    (elements), related_items_dropped (cards), forum_ENGINE, thread_comments, rescued_recall,
    rescued_baseline, expanded,
    repeated_lines_dropped, grid_added, id_runs_dropped, form_lines_dropped, title_line_dropped."""
    if not (cfg.with_date or cfg.strip_consent or cfg.strip_paywall or cfg.rescue or cfg.forum_posts or cfg.expand
            or cfg.dedup_lines or cfg.drop_related_items or cfg.add_missed_grid or not cfg.title_line):
        return extract_text(html, url, cfg), None
    from trafilatura.utils import load_html

    tree = load_html(html)
    if tree is None:
        return extract_text(html, url, cfg), None
    date = page_date(tree, cfg.date_htmldate) if cfg.with_date else None
    # the page's ids and classes, read once: the consent step's and the forum engines' markers
    index = id_class_values(tree) if cfg.strip_consent or cfg.strip_paywall or cfg.forum_posts else None
    if cfg.strip_consent or cfg.strip_paywall:
        removed = strip_banners(tree, consent=cfg.strip_consent, paywall=cfg.strip_paywall, index=index)
        if steps is not None:
            for kind, n in removed.items():
                if n:
                    steps[f"{kind}_removed"] = n
    if cfg.drop_related_items:  # other products' cards beside a single product (items.py)
        n = drop_related_items(tree, url, html)
        if n and steps is not None:
            steps["related_items_dropped"] = n
    article = declares_article(tree)  # once: the forum, rescue and expansion steps ask
    if cfg.forum_posts:
        found = forum_posts(html, tree, article, attrs=index[1])
        if found:
            if steps is not None:
                steps[f"forum_{found[0]}"] = 1
            return _without_title(found[1], html, title, cfg, steps), date
    run = cfg
    if cfg.forum_posts and not cfg.include_comments and declares_thread(html):
        run = replace(cfg, include_comments=True)  # a thread no engine above marks: its posts are "comments"
        if steps is not None:
            steps["thread_comments"] = 1
    text = extract_text(tree, url, run)  # trafilatura works on a copy: TREE stays whole
    if cfg.rescue and not run.favor_recall and _fewer_words(text, RECALL_BELOW_WORDS):
        # (next to) nothing kept: trafilatura's recall mode reads the page again
        again = extract_text(tree, url, replace(run, favor_recall=True, favor_precision=False))
        if again and len(again) > len(text or ""):
            text = again
            if steps is not None:
                steps["rescued_recall"] = 1
    if cfg.rescue:
        text, how = rescue_short_extraction(tree, text, article)
        if how and steps is not None:
            steps[f"rescued_{how}"] = 1
    if cfg.expand and not article and not declares_product(tree):
        wider = expand_to_container(tree, text)  # last: it strips TREE
        if wider is not None:
            text = wider
            if steps is not None:
                steps["expanded"] = 1
    if cfg.dedup_lines and text and not article and "<pre" not in html and "<code" not in html:
        fewer = drop_repeated_lines(text, DEDUP_MIN_WORDS, keep_code=True)
        if len(fewer) < len(text):
            text = fewer
            if steps is not None:
                steps["repeated_lines_dropped"] = 1
    if cfg.add_missed_grid and text:  # a listing's grid of item cards the text lacks (items.py)
        more = add_missed_grid(tree, text, url, html)
        if more is not None:
            text = more
            if steps is not None:
                steps["grid_added"] = 1
    return _without_title(text, html, title, cfg, steps), date


def _fewer_words(text: str | None, n: int) -> bool:
    """TEXT holds fewer than N words (runs of non-space), counted no further than N."""
    return len((text or "").split(maxsplit=n)) < n if n > 0 else False


def _without_title(text, html, title, cfg, steps):
    if cfg.drop_id_runs and text:  # lines of UUIDs a stylesheet hid (expand.py)
        text, n = drop_id_runs(text)
        if n and steps is not None:
            steps["id_runs_dropped"] = n
    if cfg.strip_forms and text:  # sign-up, newsletter and cookie-notice lines (forms.py)
        text, n = drop_form_lines(text)
        if n and steps is not None:
            steps["form_lines_dropped"] = n
    if cfg.title_line or not text:
        return text
    out = drop_title_line(text, title if title is not None else page_title(html))
    if out is not text and steps is not None:
        steps["title_line_dropped"] = 1
    return out


class _PageTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise _PageTimeout()


_OPTS: dict = {}


class ExtractorUnavailable(RuntimeError):
    """trafilatura (or one of its dependencies) cannot be imported."""


def check_extractor() -> None:
    """Import trafilatura in this process, or raise a clear error.

    Called before the worker pool starts, so the error comes at once and names its
    cause (a worker whose import fails stops the pool too: ``extracted``).
    """
    try:
        import trafilatura  # noqa: F401
    except Exception as exc:  # ImportError, or lxml's "lxml.html.clean is now separate"
        raise ExtractorUnavailable(
            f"cannot import trafilatura: {type(exc).__name__}: {exc} "
            "(reinstall the project: pip install -e . pulls lxml_html_clean)"
        ) from exc


def _init_worker(opts: dict) -> None:
    _OPTS.update(opts)
    _OPTS["config"] = ExtractConfig(**opts.get("cfg", {}))  # checked once per worker, not per page
    signal.signal(signal.SIGALRM, _alarm)
    import trafilatura  # noqa: F401  (once per worker; a failure stops the pool with the reason)


# A page's time limit is kept by an alarm inside the worker (the page is dropped as
# extract_timeout and the worker goes on); the pool kills a worker whose page is still
# running this much later (C code the alarm cannot interrupt: libxml2 on a page of
# 150,000 attributes), and the page is dropped with the same reason.
KILL_GRACE_S = 10.0


def page_pool(cfg: ExtractConfig, workers: int, start_method: str = "forkserver") -> TaskPool:
    """The extraction workers: ``extract_one`` on WORKERS processes with CFG."""
    return TaskPool(extract_one, workers, initializer=_init_worker, initargs=({"cfg": asdict(cfg)},),
                    time_limit_s=cfg.page_timeout_s + KILL_GRACE_S, max_tasks_per_worker=2000,
                    start_method=start_method, preload=("pipeline.extract.worker",))


def extracted(pool: TaskPool, tasks: list) -> Iterator[tuple[str | None, dict | None, str | None]]:
    """``extract_one``'s answers for TASKS, in order; a page whose worker was killed past
    its time limit is ``extract_timeout``, one whose worker died ``extract_crashed``."""
    try:
        for r in pool.imap(tasks):
            if isinstance(r, TaskFailed):
                yield r.task[2], None, "extract_timeout" if r.reason == "timeout" else "extract_crashed"
            else:
                yield r
    except WorkerStartError as exc:
        raise ExtractorUnavailable(f"extract worker could not start: {exc}") from exc


def extract_text(html, url: str | None, cfg: ExtractConfig) -> str | None:
    """trafilatura's text of HTML (a string or a parsed tree, left whole): the same as
    ``trafilatura.extract``, with its readability comparison skipped where it cannot
    change the text (pipeline/extract/gate.py)."""
    return extract_gated(
        html, url=url, include_comments=cfg.include_comments, favor_precision=cfg.favor_precision,
        favor_recall=cfg.favor_recall, with_metadata=False,
    )


def _read_record(path: str, offset: int):
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as fh:
        fh.seek(offset)
        for record in ArchiveIterator(fh):
            uri = record.rec_headers.get_header("WARC-Target-URI")
            date = record.rec_headers.get_header("WARC-Date")
            truncated = record.rec_headers.get_header("WARC-Truncated")
            status = int(record.http_headers.get_statuscode() or 0) if record.http_headers else 0
            headers = {k.lower(): v for k, v in (record.http_headers.headers if record.http_headers else [])}
            body = record.raw_stream.read()
            return record.rec_type, uri, date, status, headers, body, truncated
    raise EOFError(f"no WARC record at {path}:{offset}")


def extract_one(task: tuple[str, int, str | None]) -> tuple[str | None, dict | None, str | None]:
    """Worker: (warc path, offset, key) -> (key, document fields | None, drop reason | None)."""
    path, offset, key = task
    cfg = _OPTS.get("config") or ExtractConfig(**_OPTS.get("cfg", {}))
    try:
        rec_type, uri, date, status, headers, body, truncated = _read_record(path, offset)
    except Exception as exc:
        return key, None, f"warc_unreadable: {type(exc).__name__}"
    try:
        key = key or normalize_url(uri)
    except InvalidURL:
        return key, None, "invalid_url"
    if rec_type != "response":
        return key, None, "not_a_response"
    if not 200 <= status < 300:
        return key, None, "http_status"
    if truncated:
        return key, None, "truncated_record"
    ctype = headers.get("content-type", "")
    if ctype and ctype.split(";", 1)[0].strip().lower() not in ("text/html", "application/xhtml+xml", "application/xml", "text/xml"):
        return key, None, "not_html"
    try:
        body = decode_content_encoding(body, headers.get("content-encoding"), 50 * 2**20, lenient=True)
    except Exception:
        return key, None, "bad_content_encoding"
    if not body.strip():
        return key, None, "empty_body"
    html, charset = decode_html(body, ctype)
    signal.setitimer(signal.ITIMER_REAL, cfg.page_timeout_s)
    steps: dict[str, int] = {}
    title = page_title(html)
    try:
        text, pub_date = extract_page(html, uri, cfg, steps, title=title)
    except _PageTimeout:
        return key, None, "extract_timeout"
    except Exception:
        return key, None, "extract_error"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if not text or not text.strip():
        return key, None, "no_main_text"
    return key, {
        "url": uri, "url_norm": key, "text": text, "title": title, "date": pub_date,
        # fetched_at is the record's WARC-Date: the fetch time, or an archived page's capture time
        "status": status, "fetched_at": date, "warc_file": path, "warc_offset": offset, "charset": charset,
        "_steps": steps,  # what extraction's own steps did (taken out before the document is written)
    }, None


def count_steps(summary: RunSummary, doc: dict) -> None:
    """Move a document's ``_steps`` into the summary's extra["extraction_steps"]: pages
    whose consent banner or subscription prompt was removed, pages rescued, forum
    pages, pages widened to their extraction's container."""
    steps = doc.pop("_steps", None) or {}
    tally = summary.extra.setdefault("extraction_steps", {})
    for k in steps:
        name = {"consent_removed": "pages_consent_removed", "paywall_removed": "pages_paywall_removed"}.get(k, k)
        tally[name] = tally.get(name, 0) + 1


def note_steps(summary: RunSummary) -> None:
    """One line of the run's table for what extraction's steps did on the kept pages."""
    steps = summary.extra.get("extraction_steps")
    if steps:
        summary.note("of the pages kept: " + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(steps.items())))
