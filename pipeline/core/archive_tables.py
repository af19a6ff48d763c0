"""The archive tables of ``[fetch]``: ``[[fetch.archive]]`` and its older name
``[[fetch.archive_cdx]]``, parsed and checked into ``Archive`` values (kinds ``cdx``,
``commoncrawl`` and ``cc-index``), and the date form every configuration date uses."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.core.errors import ConfigError


def _parse_date(value: str | None, name: str) -> int | None:
    """'YYYY-MM-DD' (UTC midnight) -> unix seconds; None/'none'/'' -> None."""
    if value is None or str(value).lower() in ("", "none"):
        return None
    try:
        d = dt.datetime.strptime(str(value), "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError as exc:
        raise ConfigError(f"{name}: {value!r} is not a date of the form YYYY-MM-DD") from exc
    return int(d.timestamp())


KINDS = ("cdx", "commoncrawl", "cc-index")

# The CC-MAIN crawls of 2013-2017 (Common Crawl's collinfo.json; a published crawl never
# changes): the default of a cc-index archive's ``crawls`` with the 2017-12-31 cut-off.
CC_CRAWLS_2013_2017 = (
    "CC-MAIN-2013-20", "CC-MAIN-2013-48", "CC-MAIN-2014-10", "CC-MAIN-2014-15", "CC-MAIN-2014-23", "CC-MAIN-2014-35",
    "CC-MAIN-2014-41", "CC-MAIN-2014-42", "CC-MAIN-2014-49", "CC-MAIN-2014-52", "CC-MAIN-2015-06", "CC-MAIN-2015-11",
    "CC-MAIN-2015-14", "CC-MAIN-2015-18", "CC-MAIN-2015-22", "CC-MAIN-2015-27", "CC-MAIN-2015-32", "CC-MAIN-2015-35",
    "CC-MAIN-2015-40", "CC-MAIN-2015-48", "CC-MAIN-2016-07", "CC-MAIN-2016-18", "CC-MAIN-2016-22", "CC-MAIN-2016-26",
    "CC-MAIN-2016-30", "CC-MAIN-2016-36", "CC-MAIN-2016-40", "CC-MAIN-2016-44", "CC-MAIN-2016-50", "CC-MAIN-2017-04",
    "CC-MAIN-2017-09", "CC-MAIN-2017-13", "CC-MAIN-2017-17", "CC-MAIN-2017-22", "CC-MAIN-2017-26", "CC-MAIN-2017-30",
    "CC-MAIN-2017-34", "CC-MAIN-2017-39", "CC-MAIN-2017-43", "CC-MAIN-2017-47", "CC-MAIN-2017-51",
)
CC_BASE_URL = "https://data.commoncrawl.org/"
# Common Crawl serves "a few thousand requests per second" for all its users together and
# answers 503 when pushed; cdx_toolkit waits 0.55 s between data requests: ~2 requests a
# second, 2 at once, by default (raise them with care).
CC_RATE = 2.0
CC_CONCURRENCY = 2
_CRAWL = re.compile(r"^CC-MAIN-(20\d\d)-(\d\d)$")


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KEYS = {"name", "kind", "cdx_url", "replay_prefix", "data_prefix", "rate", "concurrency", "limit"}
_CC_KEYS = {"name", "kind", "base_url", "crawls", "rate", "concurrency", "paths", "links_per_task"}


@dataclass(frozen=True)
class Archive:
    name: str
    kind: str
    cdx_url: str  # the CDX endpoint (cdx, commoncrawl); "" for cc-index
    prefix: str  # replay prefix (cdx), data prefix (commoncrawl), base URL or folder (cc-index)
    rate: float = 1.0
    concurrency: int = 1
    limit: int = 5000
    crawls: tuple[str, ...] = ()  # cc-index: the crawls asked, oldest first
    paths: tuple[tuple[str, str], ...] = ()  # cc-index: (crawl, list file) for crawls with no cc-index-table.paths.gz
    links_per_task: int = 100_000  # cc-index: a lookup task asks one crawl about at most this many links (a key range)

    @property
    def s3(self) -> bool:
        """A cc-index archive read from an S3 bucket (``s3://commoncrawl/``)."""
        return self.kind == "cc-index" and self.prefix.startswith("s3://")

    @property
    def local(self) -> bool:
        """A cc-index archive in a local folder (a mirror), not over HTTP or S3."""
        return self.kind == "cc-index" and not self.prefix.startswith(("http://", "https://", "s3://"))

    @property
    def http(self) -> bool:
        return not (self.local or self.s3)


def _check_url(value, where: str, allow_private: bool) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be an http(s) URL, not {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where} must be an http(s) URL, not {value!r}")
    if parts.username or parts.password:
        raise ConfigError(f"{where}: no credentials in the URL")
    if not allow_private:
        try:
            ip = ipaddress.ip_address(parts.hostname)
        except ValueError:
            ip = None  # a name: checked when it is resolved, on every request
        if ip is not None and not (ip.is_global and not ip.is_multicast and not ip.is_reserved):
            raise ConfigError(f"{where} points at the private address {ip}; set fetch.allow_private_addresses "
                              "= true for a local archive")
    return value


def _rate_concurrency(e: dict, where: str, rate_default: float, conc_default: int) -> tuple[float, int]:
    rate = e.get("rate", rate_default)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 or rate != rate or rate == float("inf"):
        raise ConfigError(f"{where}.rate must be a number of requests per second > 0, not {rate!r}")
    conc = e.get("concurrency", conc_default)
    if isinstance(conc, bool) or not isinstance(conc, int) or conc < 1:
        raise ConfigError(f"{where}.concurrency must be a whole number >= 1, not {conc!r}")
    return float(rate), conc


def _parse_cc_index(e: dict, where: str, name: str, allow_private: bool, cutoff: str | None) -> Archive:
    unknown = set(e) - _CC_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known for kind = 'cc-index': "
                          f"{', '.join(sorted(_CC_KEYS))}")
    base = e.get("base_url", CC_BASE_URL)
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{where}.base_url must be an http(s) URL or a folder, not {base!r}")
    if base.startswith("s3://"):
        bucket = base[5:].split("/", 1)[0]
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise ConfigError(f"{where}.base_url: {base!r} names no S3 bucket (s3://commoncrawl/, credentials from "
                              "the usual AWS configuration)")
        base = base if base.endswith("/") else base + "/"
    elif base.startswith(("http://", "https://")):
        base = _check_url(base, f"{where}.base_url", allow_private)
        base = base if base.endswith("/") else base + "/"
    elif not Path(base).is_dir():
        raise ConfigError(f"{where}.base_url: no such folder {base!r} (or give an http(s) URL)")
    crawls = e.get("crawls")
    if crawls is None:
        day = _parse_date(cutoff, "fetch.archive_cutoff")
        year = dt.datetime.fromtimestamp(day, dt.timezone.utc).year if day is not None else 9999
        crawls = [c for c in CC_CRAWLS_2013_2017 if int(c.split("-")[2]) <= year]
    if not isinstance(crawls, (list, tuple)) or not crawls or not all(isinstance(c, str) and _CRAWL.match(c)
                                                                        for c in crawls):
        raise ConfigError(f"{where}.crawls must be a list of crawl names like \"CC-MAIN-2017-47\", not {crawls!r}")
    paths = e.get("paths", {})
    if not isinstance(paths, dict) or not all(isinstance(k, str) and _CRAWL.match(k) and isinstance(v, str)
                                              for k, v in paths.items()):
        raise ConfigError(f"{where}.paths must be a table of crawl = \"list file\", not {paths!r}")
    for c, f in paths.items():
        if not Path(f).is_file():
            raise ConfigError(f"{where}.paths.{c}: no such file {f!r}")
    rate, conc = _rate_concurrency(e, where, CC_RATE, CC_CONCURRENCY)
    per_task = e.get("links_per_task", 100_000)
    if isinstance(per_task, bool) or not isinstance(per_task, int) or per_task < 1:
        raise ConfigError(f"{where}.links_per_task must be a whole number >= 1, not {per_task!r}")
    return Archive(name, "cc-index", "", base, rate, conc, 5000, tuple(sorted(set(crawls))),
                   tuple(sorted(paths.items())), per_task)


def parse_archives(entries, allow_private: bool = False, cutoff: str | None = "2017-12-31", key: str = "archive_cdx",
                   taken: tuple[str, ...] = ()) -> list[Archive]:
    """``[[fetch.archive]]`` / ``[[fetch.archive_cdx]]`` (KEY) tables -> archives, checked; a
    ConfigError names the bad key. TAKEN: names used by the other table."""
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"fetch.{key} must be a list of tables ([[fetch.{key}]]), not {entries!r}")
    out: list[Archive] = []
    for i, e in enumerate(entries):
        where = f"fetch.{key}[{i}]"
        if not isinstance(e, dict):
            raise ConfigError(f"{where} must be a table with name, kind, ..., not {e!r}")
        name = e.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"{where}.name must be a short name of letters, digits, '.', '_' or '-', not {name!r}")
        if any(a.name == name for a in out) or name in taken:
            raise ConfigError(f"{where}.name: {name!r} is used twice")
        kind = e.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{where}.kind must be 'cdx' (Wayback-style), 'commoncrawl' (its CDX server) or "
                              f"'cc-index' (Common Crawl's columnar index, in bulk), not {kind!r}")
        if kind == "cc-index":
            out.append(_parse_cc_index(e, where, name, allow_private, cutoff))
            continue
        unknown = set(e) - _KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_KEYS))}")
        cdx_url = _check_url(e.get("cdx_url"), f"{where}.cdx_url", allow_private)
        pkey = "replay_prefix" if kind == "cdx" else "data_prefix"
        other = "data_prefix" if kind == "cdx" else "replay_prefix"
        if other in e:
            raise ConfigError(f"{where}.{other} is for kind = {'commoncrawl' if kind == 'cdx' else 'cdx'}; "
                              f"kind = {kind!r} reads {pkey}")
        prefix = _check_url(e.get(pkey), f"{where}.{pkey}", allow_private)
        rate, conc = _rate_concurrency(e, where, 1.0, 1)
        v = e.get("limit", 5000)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{where}.limit must be a whole number >= 1, not {v!r}")
        out.append(Archive(name, kind, cdx_url, prefix, rate, conc, v))
    return out
