"""HTTP for the fetch stage: one polite, bounded GET at a time.

``Fetcher.fetch`` fetches one URL following redirects by hand (every hop's host
checked, pipeline/fetch/netsafety.py), through a per-host throttle (``HostThrottle``:
concurrency and delay between request starts), after the origin's robots.txt,
reading at most ``max_bytes`` before a whole-response deadline that a trickling
server cannot stretch (``Deadlines``), and classifies the answer (``classify``:
ok, http_<code>, not_html, binary, too_large, ...). No files: the stage
(pipeline/fetch/) stores what it returns. This is the threaded transport
(``[fetch] transport = "threads"``); pipeline/fetch/aiofetch.py applies the same
rules on asyncio (urllib3 and requests are imported only when this one runs).
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.robotparser
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from pipeline.core.config import FetchConfig
from pipeline.fetch.netsafety import (
    FetchRefused,
    pinned_pool_manager,
    resolve_public,
    without_credentials,
)

HTML_TYPES = ("text/html", "application/xhtml+xml", "application/xml", "text/xml")


BINARY_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"MZ", b"\x7fELF", b"RIFF", b"ID3",
                b"OggS")


class Deadlines:
    """Whole-response deadlines that a server cannot stretch.

    A socket read time-out restarts with every byte, so a server that trickles its
    header lines, a chunk-size line or a robots.txt could hold a worker for as long
    as it likes. Each GET registers its deadline here (``begin``); every socket its
    connection uses (new or pooled) is attached to it; one watchdog thread shuts
    down the sockets of a request whose deadline has passed, which ends any
    blocked read at once. ``expired`` then tells the fetcher to record a time-out
    rather than what the cut connection looked like."""

    def __init__(self):
        self.cv = threading.Condition()
        self.active: dict[int, tuple[float, list]] = {}
        self.expired_tokens: set[int] = set()
        self.local = threading.local()
        self.thread: threading.Thread | None = None
        self.next_token = 0
        self.wake_at = 0.0  # when the watchdog wakes next (monotonic)

    def begin(self, deadline: float) -> int:
        with self.cv:
            self.next_token += 1
            token = self.next_token
            self.active[token] = (deadline, [])
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._watch, name="webtext-deadlines", daemon=True)
                self.thread.start()
            if deadline < self.wake_at:  # woken only when this deadline comes first (rarely: all are now + total)
                self.wake_at = deadline
                self.cv.notify()
        self.local.token = token
        return token

    def attach(self, sock) -> None:
        token = getattr(self.local, "token", None)
        if token is None or sock is None:
            return
        with self.cv:
            entry = self.active.get(token)
            if entry is not None:
                entry[1].append(sock)

    def end(self, token: int) -> None:
        with self.cv:
            self.active.pop(token, None)
            self.expired_tokens.discard(token)
        self.local.token = None

    def expired(self, token: int) -> bool:
        with self.cv:
            return token in self.expired_tokens

    def _watch(self) -> None:
        with self.cv:
            while True:
                now = time.monotonic()
                for token, (deadline, socks) in list(self.active.items()):
                    if now >= deadline and token not in self.expired_tokens:
                        self.expired_tokens.add(token)
                        for sock in socks:
                            try:
                                sock.shutdown(socket.SHUT_RDWR)
                            except OSError:
                                pass
                waits = [d - now for t, (d, _) in self.active.items() if t not in self.expired_tokens]
                wait = max(0.01, min(waits)) if waits else 5.0
                self.wake_at = now + wait
                self.cv.wait(timeout=wait)


DEADLINES = Deadlines()


class HostThrottle:
    """At most ``concurrency`` requests in flight per host and ``delay`` seconds
    between the starts of two requests to one host."""

    def __init__(self, concurrency: int, delay: float):
        self.delay = delay
        self.sems: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(concurrency))
        self.next_ok: dict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def acquire(self, host: str) -> None:
        self.sems[host].acquire()
        while True:
            with self.lock:
                now = time.monotonic()
                wait = self.next_ok[host] - now
                if wait <= 0:
                    self.next_ok[host] = now + self.delay
                    return
            time.sleep(min(wait, 1.0))

    def release(self, host: str) -> None:
        self.sems[host].release()


@dataclass
class Response:
    url: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    truncated: str | None  # "length" when cut at max_bytes
    http_version: str = "HTTP/1.1"
    request_headers: list[tuple[str, str]] = field(default_factory=list)


ROBOTS_MAX_BYTES = 512 * 1024


def robots_rules(answer: "Response") -> urllib.robotparser.RobotFileParser:
    """The rules of a robots.txt ANSWER, under either transport: 401/403 forbid the whole
    site, any other error allows it, else the file as parsed."""
    rp = urllib.robotparser.RobotFileParser()
    if answer.status in (401, 403):
        rp.disallow_all = True
    elif answer.status >= 400:
        rp.allow_all = True
    else:
        rp.parse(answer.body.decode("utf-8", "replace").splitlines())
    return rp


def sniff_binary(head: bytes) -> bool:
    if head.startswith(BINARY_MAGIC):
        return True
    sample = head[:2048]
    return b"\x00" in sample


class Fetcher:
    def __init__(self, cfg: FetchConfig):
        self.cfg = cfg
        self.throttle = HostThrottle(cfg.per_host_concurrency, cfg.per_host_delay_s)
        self.pool_lock = threading.Lock()
        self._pool = None
        self.headers = {"User-Agent": cfg.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
                        "Accept-Encoding": "gzip, deflate"}
        self.robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        self.robots_lock = threading.Lock()
        self.robots_pending: dict[str, threading.Lock] = {}
        self.pins: dict[tuple[str, int], str] = {}  # (host, port) -> the checked address connections use

    def _pin(self, host: str, port: int) -> str | tuple[str, int]:
        """The address to connect to: ``resolve``'s mapping for a mapped host (address
        and port, allowed as given), else the one checked by this fetch (``check``),
        or, for a connection nothing checked yet (robots.txt), checked now."""
        mapped = self.cfg.resolve.get(host)
        if mapped is not None:
            from pipeline.core.config import _split_target

            return _split_target(mapped)
        if self.cfg.allow_private_addresses:
            return host
        ip = self.pins.get((host, port))
        if ip is None:
            ip = resolve_public(host, port)
            self.pins[(host, port)] = ip
        return ip

    def check_target(self, url: str) -> tuple[str, int] | None:
        """The (host, port) whose addresses ``check`` resolves and checks for URL, or
        None for a host in ``resolve`` (its mapped address is not checked: the
        configuration named it). Both transports ask this."""
        parts = urlsplit(url)
        host = parts.hostname
        if not host:
            raise FetchRefused("invalid_url", url)
        if host in self.cfg.resolve:
            return None
        return host, parts.port or (443 if parts.scheme == "https" else 80)

    def check(self, url: str) -> None:
        """Resolve and check the URL's host once; connections then go to that address."""
        target = self.check_target(url)
        if target is not None:
            self.pins[target] = resolve_public(*target)

    def pool(self):
        """The connections of this fetcher: one thread-safe urllib3 pool manager
        (keep-alive per host; a connection left half-read is closed, not reused).
        No environment proxies or .netrc (urllib3 reads neither; see
        FetchConfig.proxy); with ``proxy`` the proxy resolves the names."""
        import urllib3

        with self.pool_lock:
            if self._pool is None:
                cfg = self.cfg
                kw = dict(num_pools=max(64, 4 * cfg.workers), maxsize=max(2, cfg.per_host_concurrency), block=False,
                          retries=False)
                if cfg.proxy:
                    self._pool = urllib3.ProxyManager(cfg.proxy, **kw)
                else:
                    self._pool = pinned_pool_manager(self._pin, DEADLINES.attach, **kw)
            return self._pool

    def robots_allows(self, url: str) -> bool:
        """robots.txt is fetched once per origin (other workers for that origin wait
        for it) and through the per-host throttle, like any request to the host."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self.robots_lock:
            if origin in self.robots:
                rp = self.robots[origin]
                return True if rp is None else rp.can_fetch(self.cfg.user_agent, url)
            pending = self.robots_pending.setdefault(origin, threading.Lock())
        with pending:
            with self.robots_lock:
                done = origin in self.robots
            if not done:
                host = parts.netloc.lower()
                self.throttle.acquire(host)
                try:
                    rp = robots_rules(self._get(origin + "/robots.txt", max_bytes=ROBOTS_MAX_BYTES))
                except Exception:
                    rp = None  # robots.txt unreachable: allowed, as crawlers commonly do
                finally:
                    self.throttle.release(host)
                with self.robots_lock:
                    self.robots[origin] = rp
        rp = self.robots.get(origin)
        return True if rp is None else rp.can_fetch(self.cfg.user_agent, url)

    def _get(self, url: str, max_bytes: int, headers: dict | None = None) -> Response:
        """One GET (no redirects), reading at most ``max_bytes`` of the raw body
        before the whole-response deadline (``headers``: more request headers)."""
        cfg = self.cfg
        deadline = time.monotonic() + cfg.total_timeout_s
        target, extra = url, dict(headers or {})
        if cfg.proxy and urlsplit(url).hostname in cfg.resolve:  # through a proxy the proxy connects: ask it for the mapping
            parts = urlsplit(url)
            target = parts._replace(netloc=cfg.resolve[parts.hostname]).geturl()
            extra["Host"] = parts.netloc
        import requests
        import urllib3

        token = DEADLINES.begin(deadline)
        try:
            return self._get_within(target, url, extra, max_bytes, deadline, token)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if DEADLINES.expired(token) or time.monotonic() >= deadline:
                raise FetchRefused("timeout", f"whole response not received within {cfg.total_timeout_s}s") from exc
            raise
        finally:
            DEADLINES.end(token)

    def _get_within(self, target: str, url: str, extra: dict, max_bytes: int, deadline: float, token: int) -> Response:
        import requests
        import urllib3

        cfg = self.cfg
        headers_out = {**self.headers, **extra}
        E = urllib3.exceptions
        try:
            r = self.pool().request("GET", target, headers=headers_out, preload_content=False, decode_content=False,
                                    redirect=False, retries=False,
                                    timeout=urllib3.Timeout(connect=cfg.connect_timeout_s,
                                                            read=min(cfg.connect_timeout_s, cfg.total_timeout_s)))
        except E.NewConnectionError as exc:  # before ConnectTimeoutError: one of its subclasses
            raise requests.exceptions.ConnectionError(str(exc)) from exc
        except E.ConnectTimeoutError as exc:
            raise requests.exceptions.ConnectTimeout(str(exc)) from exc
        except E.ReadTimeoutError as exc:
            raise requests.exceptions.ReadTimeout(str(exc)) from exc
        except (E.LocationValueError, E.LocationParseError) as exc:
            raise requests.exceptions.InvalidURL(str(exc)) from exc
        except (E.HTTPError, OSError) as exc:  # protocol, TLS, proxy errors; reset connections
            raise requests.exceptions.ConnectionError(f"{type(exc).__name__}: {exc}") from exc
        complete = False
        try:
            headers = list(r.headers.items())
            truncated = None
            declared = r.headers.get("Content-Length")
            chunks = []
            total = 0
            if declared and declared.isdigit() and int(declared) > max_bytes:
                truncated = "length"
            else:
                # read1 returns whatever arrived, so the deadline is checked even
                # when a server trickles one byte at a time.
                while True:
                    try:
                        chunk = r.read1(65536, decode_content=False)
                    except E.ReadTimeoutError as exc:
                        raise requests.exceptions.ReadTimeout(str(exc)) from exc
                    except (E.ProtocolError, E.HTTPError) as exc:
                        raise requests.exceptions.ConnectionError(str(exc)) from exc
                    if not chunk:
                        complete = True
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > max_bytes:
                        truncated = "length"
                        break
                    if time.monotonic() > deadline:
                        raise FetchRefused("timeout", f"whole response not received within {cfg.total_timeout_s}s")
            if DEADLINES.expired(token):  # the watchdog cut the connection: what arrived is not the page
                complete = False
                raise FetchRefused("timeout", f"whole response not received within {cfg.total_timeout_s}s")
            body = b"".join(chunks)[:max_bytes]
            version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(getattr(r, "version", 11), "HTTP/1.1")
            return Response(url, r.status, r.reason or "", headers, body, truncated, version, list(headers_out.items()))
        finally:
            if not complete:
                r.close()  # the rest of the body is not read: the connection is not reused
            r.release_conn()

    def retry_wait(self, attempt: int, resp: Response | None, err: tuple | None) -> float | None:
        """Seconds to wait before asking again after ATTEMPT retries, or None when the
        answer stands: connection errors, 429 and 5xx are retried up to ``retries``
        times with exponential back-off, a numeric Retry-After (at most 60 s) instead.
        Both transports decide here."""
        retryable = (err is not None and err[0] == "connection_error") or (
            resp is not None and (resp.status == 429 or 500 <= resp.status < 600)
        )
        if not retryable or attempt >= self.cfg.retries:
            return None
        wait = self.cfg.backoff_s * 2 ** attempt
        if resp is not None:
            ra = dict((k.lower(), v) for k, v in resp.headers).get("retry-after", "")
            if ra.isdigit():
                wait = min(float(ra), 60.0)
        return wait

    def after_answer(self, url: str, current: str, resp: Response | None, err: tuple | None,
                     info: dict) -> str | tuple[str, Response | None, dict]:
        """The final answer for CURRENT (after its retries) as (outcome, response, info),
        or the URL a redirect leads to (the next hop). Both transports decide here."""
        if err is not None:
            info["error"] = f"{type(err[1]).__name__}: {err[1]}"[:500]
            return err[0], None, info
        if resp.status in (301, 302, 303, 307, 308):
            loc = dict((k.lower(), v) for k, v in resp.headers).get("location")
            if not loc:
                return f"http_{resp.status}", resp, info
            info["redirects"].append(current)
            info["_responses"].append(resp)
            nxt = urljoin(current, loc)
            if urlsplit(nxt).scheme not in ("http", "https"):
                return "invalid_url", None, info
            return nxt
        outcome = self.classify(resp)
        if outcome == "ok":
            dead = self.dead_page(url, current, resp)
            if dead is not None:  # a parking or "page not found" page under status 200: not the page linked
                info["final_url"] = current
                return dead, resp, info
        return outcome, resp, info

    def fetch(self, url: str) -> tuple[str, Response | None, dict]:
        """Fetch one URL following redirects by hand (each hop checked). Returns
        (outcome, last response or None, details)."""
        import requests

        cfg = self.cfg
        # "_responses": every response before the last (redirect hops, answers that were
        # retried) so the WARC holds every response received, as its docs say.
        info: dict = {"redirects": [], "_responses": []}
        current = url
        for hop in range(cfg.max_redirects + 1):
            current = without_credentials(current)
            if not cfg.allow_private_addresses:
                self.check(current)
            host = urlsplit(current).netloc.lower()
            if cfg.respect_robots and not self.robots_allows(current):
                return "robots_disallowed", None, info
            attempt = 0
            while True:
                self.throttle.acquire(host)
                try:
                    resp = self._get(current, cfg.max_bytes)
                    err = None
                except FetchRefused:
                    raise
                except requests.exceptions.ConnectTimeout as exc:
                    resp, err = None, ("timeout", exc)
                except requests.exceptions.ReadTimeout as exc:
                    resp, err = None, ("timeout", exc)
                except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                    resp, err = None, ("connection_error", exc)
                except requests.exceptions.InvalidURL as exc:
                    resp, err = None, ("invalid_url", exc)
                finally:
                    self.throttle.release(host)
                wait = self.retry_wait(attempt, resp, err)
                if wait is not None:
                    attempt += 1
                    info["retries"] = attempt
                    if resp is not None:
                        info["_responses"].append(resp)
                    time.sleep(wait)
                    continue
                break
            step = self.after_answer(url, current, resp, err, info)
            if isinstance(step, tuple):
                return step
            current = step
        return "too_many_redirects", None, info

    def dead_page(self, asked: str, final: str, resp: Response) -> str | None:
        """``parked_domain`` / ``soft_404`` for a 200 HTML page that is not the page linked
        (pipeline/fetch/deadpages.py), else None."""
        from pipeline.core.html import decode_content_encoding, decode_html
        from pipeline.fetch.deadpages import dead_page

        headers = {k.lower(): v for k, v in resp.headers}
        try:
            body = decode_content_encoding(resp.body, headers.get("content-encoding"), self.cfg.max_bytes, lenient=True)
        except (ValueError, zlib.error):
            return None
        html, _ = decode_html(body[:200_000], headers.get("content-type"))
        return dead_page(asked, final, html)

    def classify(self, resp: Response) -> str:
        if not 200 <= resp.status < 300:
            return f"http_{resp.status}"
        headers = {k.lower(): v for k, v in resp.headers}
        if resp.truncated:
            return "too_large"
        ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype and ctype not in HTML_TYPES:
            return "not_html"
        enc = headers.get("content-encoding", "")
        head = resp.body[:4096]
        if enc:
            from pipeline.core.html import decode_content_encoding

            try:
                head = decode_content_encoding(resp.body, enc, self.cfg.max_bytes, lenient=True)[:4096]
            except ValueError:
                return "decoded_too_large"
            except zlib.error:
                return "bad_content_encoding"
        from pipeline.core.html import header_charset, utf16_bom

        if utf16_bom(head) or (header_charset(headers.get("content-type", "")) or "").lower().replace("-", "") in (
                "utf16", "utf16le", "utf16be"):
            return "ok"  # UTF-16 text is full of NUL bytes: not a sign of binary here
        if sniff_binary(head):
            return "binary"
        return "ok"
