"""HTTP/1.1 on asyncio for the fetch stage: connections, one GET at a time on each, responses read as urllib3 reads them.

The threaded transport (pipeline/fetch/webclient.py) reads responses with
http.client under urllib3; this module reads them the same way on an asyncio
protocol, without a task or a coroutine per read: ``H1Connection`` parses what
arrives in ``data_received`` and resolves one future per request. The same
answer gives the same status, reason, version, header list (urllib3's order:
grouped by name, the first spelling of each name), body and truncation as
there, so a WARC record is the same bytes whichever transport fetched it:

- status line as ``http.client`` (``HTTP/1.0`` and ``HTTP/0.9`` are 1.0, other
  ``HTTP/1.x`` 1.1, the reason stripped; ``100 Continue`` skipped); at most 100
  header lines of at most 65,536 bytes;
- a plain header block (``Name: value`` lines ending in CRLF) is split here; any
  other (folded lines, bare LF, odd names) goes through ``http.client.parse_headers``
  itself, then urllib3's unfolding;
- the body framed as http.client frames it (chunked only for ``Transfer-Encoding:
  chunked``, else Content-Length, else until the server closes), and a body shorter
  than its Content-Length is an error, as urllib3 makes it;
- a Content-Length over the cap ends the request before any body byte
  (``WARC-Truncated: length``, empty body), a longer body is cut at the cap; in both
  cases the connection is closed, never reused.

Deadlines: one timer per request, at the earlier of the whole-response deadline
(``DeadlineExpired``) and the read time-out since the last byte (``ReadTimeout``);
a trickling server cannot stretch the first. Connections (``ConnectionPool``): at
most ``maxsize`` idle ones kept per (scheme, host, port), ``num_pools`` such keys,
least recently used dropped first; each new one goes to the address ``pin`` returns
(the checked public address: no DNS rebinding), TLS verified against the host name.
New connections to one host open one at a time, each after the previous one's first
answer or 0.25 s (a burst of connects overflows a busy server's accept queue).

This module is long because the response parser, its framing and deadlines and the
pool that opens and reuses its connections share one connection state machine.
"""

from __future__ import annotations

import asyncio
import io
import re
import ssl
from collections import OrderedDict
from urllib.parse import urlsplit

_MAXLINE = 65536  # http.client's limits
_MAXHEADERS = 100
_HEAD_LIMIT = (_MAXLINE + 1) * (_MAXHEADERS + 2)
_HEAD_END = re.compile(rb"\n\r?\n")
_PLAIN_HEADERS = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[^\r\n]*\r\n)*")
_OBSOLETE_FOLD = re.compile(r"(?:(?<![ \t])[ \t]+)?\r\n[ \t]+")  # urllib3's unfolding
_PLAIN_HOST = re.compile(r"[a-z0-9][a-z0-9.-]*")
_PLAIN_TARGET = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-F]{2})*")


class TransportError(Exception):
    """A request that got no HTTP answer; ``outcome`` is how the fetch stage records it."""

    outcome = "connection_error"


class ConnectionFailed(TransportError):
    outcome = "connection_error"


class ConnectTimeout(TransportError):
    outcome = "timeout"


class ReadTimeout(TransportError):
    outcome = "timeout"


class DeadlineExpired(TransportError):
    outcome = "timeout"


class InvalidRequestURL(TransportError):
    outcome = "invalid_url"


# Named as the threaded transport's (requests') exceptions in the outcome's "error" text.
ConnectionFailed.__name__ = ConnectionFailed.__qualname__ = "ConnectionError"
InvalidRequestURL.__name__ = InvalidRequestURL.__qualname__ = "InvalidURL"


def parse_status(line: bytes) -> tuple[int, int, str]:
    """(version 10 or 11, status, reason) of a status line, as http.client reads it."""
    if len(line) > _MAXLINE:
        raise ConnectionFailed("LineTooLong: status line")
    s = str(line, "iso-8859-1")
    try:
        version, status, reason = s.split(None, 2)
    except ValueError:
        try:
            version, status = s.split(None, 1)
            reason = ""
        except ValueError:
            version = ""
    if not version.startswith("HTTP/"):
        raise ConnectionFailed(f"BadStatusLine: {s!r}" if s else "Remote end closed connection without response")
    try:
        code = int(status)
    except ValueError:
        code = 0
    if not 100 <= code <= 999:
        raise ConnectionFailed(f"BadStatusLine: {s!r}")
    if version in ("HTTP/1.0", "HTTP/0.9"):
        v = 10
    elif version.startswith("HTTP/1."):
        v = 11
    else:
        raise ConnectionFailed(f"UnknownProtocol: {version!r}")
    return v, code, reason.strip()


def parse_headers(block: bytes) -> tuple[list[tuple[str, str]], dict[str, str], dict[str, list[str]]]:
    """The header lines BLOCK (through the blank line) as (urllib3's header list,
    {lower-case name: first value as http.client's message gives it}, {lower-case
    name: [first spelling, values...]})."""
    if (len(block) <= _MAXLINE and block.endswith(b"\r\n") and block.count(b"\n") <= _MAXHEADERS + 1
            and _PLAIN_HEADERS.fullmatch(block, 0, len(block) - 2)):
        raw = []
        for line in block[:-2].decode("iso-8859-1").split("\r\n")[:-1]:
            name, _, value = line.partition(":")
            raw.append((name, value.lstrip(" \t")))
        items = raw
    else:
        import http.client

        try:
            msg = http.client.parse_headers(io.BytesIO(block))
        except http.client.HTTPException as exc:
            raise ConnectionFailed(f"{type(exc).__name__}: {exc}") from exc
        raw = [(k, str(v)) for k, v in msg.items()]
        items = [(k, _OBSOLETE_FOLD.sub(" ", v) if "\r\n" in v else v) for k, v in raw]
    first: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    for (name, value), (_, raw_value) in zip(items, raw):
        low = name.lower()
        first.setdefault(low, raw_value)
        g = groups.get(low)
        if g is None:
            groups[low] = [name, value]
        else:
            g.append(value)
    if len(groups) == len(items):
        return items, first, groups
    return [(g[0], v) for g in groups.values() for v in g[1:]], first, groups


class Head:
    """A response's status line and headers, and how its body is framed."""

    __slots__ = ("version", "status", "reason", "headers", "groups", "chunked", "length", "will_close", "enforce")

    def __init__(self, version: int, status: int, reason: str, headers: list, first: dict, groups: dict):
        self.version, self.status, self.reason, self.headers, self.groups = version, status, reason, headers, groups
        te = first.get("transfer-encoding")
        self.chunked = te is not None and te.lower() == "chunked"
        conn = first.get("connection")
        if version == 11:
            self.will_close = bool(conn and "close" in conn.lower())
        else:
            pconn = first.get("proxy-connection")
            self.will_close = not (first.get("keep-alive") or (conn and "keep-alive" in conn.lower())
                                   or (pconn and "keep-alive" in pconn.lower()))
        length = None
        cl = first.get("content-length")
        if cl and not self.chunked:
            try:
                length = int(cl)
            except ValueError:
                length = None
            if length is not None and length < 0:
                length = None
        if status in (204, 304) or 100 <= status < 200:
            length = 0
        if not self.will_close and not self.chunked and length is None:
            self.will_close = True
        self.length = length
        # urllib3's own view: a body shorter than its Content-Length is an error
        joined = self.get("content-length")
        u3_chunked = "chunked" in (e.strip() for e in (self.get("transfer-encoding") or "").lower().split(","))
        self.enforce = joined is not None and not u3_chunked
        if self.enforce:
            try:
                values = {int(v) for v in joined.split(",")}
            except ValueError:
                self.enforce = False
            else:
                if len(values) > 1:
                    raise ConnectionFailed(f"InvalidHeader: Content-Length contained multiple unmatching values ({joined})")

    def get(self, name: str) -> str | None:
        """A header's values joined by ", " (urllib3's ``headers.get``), or None."""
        g = self.groups.get(name)
        return None if g is None else g[1] if len(g) == 2 else ", ".join(g[1:])


_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE = range(8)


class H1Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: ``exchange`` writes a request and returns a future of
    (Head, body, truncated, reusable), or of a TransportError."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport = None
        self.closed = False
        self.fut = None
        self.timer = None
        self.state = _IDLE
        self.buf = bytearray()
        self.scan = 0
        self.head: Head | None = None
        self.chunks: list[bytes] = []
        self.total = 0
        self.left = 0
        self.max_bytes = 0
        self.deadline = 0.0
        self.read_timeout = 0.0
        self.last = 0.0
        self.answered = asyncio.Event()  # set by the first byte from the server, or the end

    # --- asyncio.Protocol ---

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.answered.set()
        if self.fut is not None and not self.fut.done():
            self._eof(exc)

    def eof_received(self):
        if self.fut is not None and not self.fut.done():
            self._eof(None)
        return False

    def data_received(self, data: bytes) -> None:
        self.answered.set()
        if self.fut is None or self.fut.done():  # bytes nobody asked for: the connection is not reused
            self.closed = True
            self.transport.abort()
            return
        self.last = self.loop.time()
        try:
            if self.state == _LENGTH and not self.buf:
                self._take_length(data)
            else:
                self.buf += data
                self._advance()
        except TransportError as exc:
            self._fail(exc)

    # --- requests ---

    def exchange(self, data: bytes, max_bytes: int, deadline: float, read_timeout: float) -> asyncio.Future:
        self.fut = fut = self.loop.create_future()
        self.state = _HEAD
        self.buf.clear()
        self.scan = 0
        self.head = None
        self.chunks = []
        self.total = 0
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.read_timeout = read_timeout
        self.last = self.loop.time()
        self.timer = self.loop.call_at(min(deadline, self.last + read_timeout), self._on_timer)
        self.transport.write(data)
        return fut

    def abort(self) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.abort()

    def _on_timer(self) -> None:
        self.timer = None
        if self.fut is None or self.fut.done():
            return
        now = self.loop.time()
        if now >= self.deadline:
            self._fail(DeadlineExpired("whole response not received in time"))
        elif now - self.last >= self.read_timeout:
            self._fail(ReadTimeout(f"Read timed out. (read timeout={self.read_timeout})"))
        else:
            self.timer = self.loop.call_at(min(self.deadline, self.last + self.read_timeout), self._on_timer)

    def _fail(self, exc: TransportError) -> None:
        self.abort()
        self.state = _IDLE
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(exc)

    def _done(self, truncated: str | None = None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        head = self.head
        body = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        if truncated:
            body = body[: self.max_bytes]
        reusable = not truncated and not head.will_close and not self.buf and not self.closed
        self.state = _IDLE
        self.chunks = []
        if not reusable:
            self.abort() if truncated else self._close()
        if not self.fut.done():
            self.fut.set_result((head, body, truncated, reusable))

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _eof(self, exc) -> None:
        """The server closed (EXC: how, None for a clean end): the end of a body read
        until then, else an error."""
        if exc is None and self.state == _HEAD and self.buf:
            # http.client takes what came before the end as the whole header block
            if not self.buf.endswith(b"\n"):
                self.buf += b"\r\n"
            self.buf += b"\r\n"
            try:
                self._advance()
            except TransportError as e:
                self._fail(e)
            if self.fut.done():
                return
        if exc is None and (self.state == _UNTIL_CLOSE or (self.state == _LENGTH and not self.head.enforce)):
            self._done()  # (a short body is an error only where urllib3 counts its Content-Length)
        elif self.state == _TRAILER and exc is None:
            self._done()
        elif self.state == _HEAD and not self.buf:
            self._fail(ConnectionFailed(f"Remote end closed connection without response{f': {exc}' if exc else ''}"))
        elif exc is not None:
            self._fail(ConnectionFailed(f"{type(exc).__name__}: {exc}"))
        else:
            self._fail(ConnectionFailed(f"IncompleteRead: {self.total} bytes read"))

    # --- parsing ---

    def _advance(self) -> None:
        if self.state == _HEAD:
            while True:
                m = _HEAD_END.search(self.buf, self.scan)
                if m is None:
                    if len(self.buf) > _HEAD_LIMIT or (len(self.buf) > _MAXLINE and b"\n" not in self.buf):
                        raise ConnectionFailed("LineTooLong: header block")
                    self.scan = max(0, len(self.buf) - 2)
                    return
                nl = self.buf.index(b"\n")
                version, status, reason = parse_status(bytes(self.buf[: nl + 1]))
                end = m.end()
                block = bytes(self.buf[nl + 1: end])
                del self.buf[:end]
                self.scan = 0
                if status == 100:  # http.client skips it and its headers
                    continue
                self.head = Head(version, status, reason, *parse_headers(block))
                break
            if self._start_body():
                return
        if self.state == _LENGTH:
            data = bytes(self.buf)
            self.buf.clear()
            if data:
                self._take_length(data)
            return
        if self.state == _UNTIL_CLOSE:
            if self.buf:
                self._append(bytes(self.buf))
                self.buf.clear()
            return
        self._chunked()

    def _start_body(self) -> bool:
        """Decides the body's framing; True when the response is already complete."""
        head = self.head
        declared = head.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            self._done("length")  # not read at all, as the threaded transport does
            return True
        if head.chunked:
            self.state = _CHUNK_SIZE
        elif head.length is not None:
            self.state = _LENGTH
            self.left = head.length
            if self.left == 0:
                self._done()
                return True
        else:
            self.state = _UNTIL_CLOSE
        return False

    def _append(self, data: bytes) -> bool:
        """Adds body bytes; True (and the response done) once past the cap."""
        self.chunks.append(data)
        self.total += len(data)
        if self.total > self.max_bytes:
            self._done("length")
            return True
        return False

    def _take_length(self, data: bytes) -> None:
        n = len(data)
        if n < self.left:
            self.left -= n
            self._append(data)
            return
        if n > self.left:  # bytes past the body: the connection cannot be reused
            self.buf += data[self.left:]
            data = data[: self.left]
        self.left = 0
        if not self._append(data):
            self._done()

    def _chunked(self) -> None:
        buf = self.buf
        pos = 0
        try:
            while True:
                state = self.state
                if state == _CHUNK_SIZE or state == _TRAILER:
                    nl = buf.find(b"\n", pos)
                    if nl < 0:
                        if len(buf) - pos > _MAXLINE:
                            raise ConnectionFailed("LineTooLong: chunk size" if state == _CHUNK_SIZE else
                                                   "LineTooLong: trailer line")
                        return
                    line = bytes(buf[pos: nl + 1])
                    pos = nl + 1
                    if len(line) > _MAXLINE:
                        raise ConnectionFailed("LineTooLong")
                    if state == _TRAILER:
                        if line in (b"\r\n", b"\n"):
                            del buf[:pos]
                            pos = 0
                            self._done()
                            return
                        continue
                    i = line.find(b";")
                    if i >= 0:
                        line = line[:i]
                    try:
                        size = int(line, 16)
                    except ValueError:
                        raise ConnectionFailed("IncompleteRead: bad chunk size") from None
                    if size < 0:
                        raise ConnectionFailed("IncompleteRead: bad chunk size")
                    if size == 0:
                        self.state = _TRAILER
                    else:
                        self.left = size
                        self.state = _CHUNK_DATA
                elif state == _CHUNK_DATA:
                    avail = len(buf) - pos
                    if avail <= 0:
                        return
                    take = min(avail, self.left)
                    data = bytes(buf[pos: pos + take])
                    pos += take
                    self.left -= take
                    if self._append(data):
                        return
                    if self.left == 0:
                        self.state = _CHUNK_END
                else:  # _CHUNK_END: the CRLF after a chunk's data (not checked, as http.client)
                    if len(buf) - pos < 2:
                        return
                    pos += 2
                    self.state = _CHUNK_SIZE
        finally:
            del buf[:pos]


def request_target(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, request target, Host header) of URL as urllib3 sends it: a
    plain URL split here, any other by urllib3's ``parse_url`` (IDNA, percent-encoding,
    dot segments)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port
    except ValueError as exc:
        raise InvalidRequestURL(str(exc)) from exc
    if scheme not in ("http", "https"):
        raise InvalidRequestURL(f"not an http(s) URL: {url}")
    default = 443 if scheme == "https" else 80
    path, query = parts.path, parts.query
    if (_PLAIN_HOST.fullmatch(host) and not host.endswith(".") and "@" not in parts.netloc
            and _PLAIN_TARGET.fullmatch(path) and _PLAIN_TARGET.fullmatch(query) and "/." not in path
            and (query or "?" not in url)):
        target = (path or "/") + (f"?{query}" if query else "")
        header = host if port in (None, default) else f"{host}:{port}"
        return scheme, host, port or default, target, header
    from urllib3.exceptions import LocationParseError, LocationValueError
    from urllib3.util import parse_url

    try:
        u = parse_url(url)
    except (LocationParseError, LocationValueError, ValueError) as exc:
        raise InvalidRequestURL(str(exc)) from exc
    if not u.host:
        raise InvalidRequestURL(f"No host specified: {url}")
    name = u.host.strip("[]").rstrip(".")
    shown = f"[{name}]" if ":" in name else name
    p = u.port or default
    return scheme, host or name, p, u.request_uri, shown if p == default else f"{shown}:{p}"


class ConnectionPool:
    """Keep-alive connections by (scheme, host, port); new ones to ``pin(host, port)``'s
    address (an address, or (address, port) for a mapped host), TLS checked against
    the host name with the system's trust store."""

    def __init__(self, pin, connect_timeout: float, maxsize: int, num_pools: int):
        self.pin = pin  # async (host, port) -> address | (address, port)
        self.connect_timeout = connect_timeout
        self.maxsize = maxsize
        self.num_pools = num_pools
        self.idle: OrderedDict[tuple, list[H1Connection]] = OrderedDict()
        self.ssl_context: ssl.SSLContext | None = None
        # New connections to one (scheme, host, port) open one at a time, each once the
        # previous new one has had an answer (or SLOW_START_S has passed): a burst of
        # connects can overflow a busy server's accept queue (Python's socketserver
        # listens with a backlog of 5), and a dropped SYN is sent again only after 1 s.
        self.opening: dict[tuple, list] = {}  # key -> [lock, users]

    SLOW_START_S = 0.25

    async def acquire(self, key: tuple, deadline: float) -> H1Connection:
        conn = self._idle(key)
        if conn is not None:
            return conn
        loop = asyncio.get_running_loop()
        slot = self.opening.setdefault(key, [asyncio.Lock(), 0])
        slot[1] += 1  # each user leaves once: timed out waiting, or after its release
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await slot[0].acquire()
        except TimeoutError:
            self._leave(key, slot)
            raise DeadlineExpired("whole response not received in time") from None
        try:
            conn = self._idle(key)  # one may have come back while this request waited
            if conn is None:
                conn = await self._open(key, deadline)
        except BaseException:
            self._leave(key, slot, release=True)
            raise
        if conn.answered.is_set() or not conn.transport or conn.closed:
            self._leave(key, slot, release=True)
        else:
            loop.create_task(self._leave_when_answered(key, slot, conn))
        return conn

    async def _leave_when_answered(self, key: tuple, slot: list, conn: H1Connection) -> None:
        try:
            await asyncio.wait_for(conn.answered.wait(), self.SLOW_START_S)
        except TimeoutError:
            pass
        finally:
            self._leave(key, slot, release=True)

    def _leave(self, key: tuple, slot: list, release: bool = False) -> None:
        if release:
            slot[0].release()
        slot[1] -= 1
        if not slot[1] and self.opening.get(key) is slot:
            del self.opening[key]

    def _idle(self, key: tuple) -> H1Connection | None:
        conns = self.idle.get(key)
        while conns:
            conn = conns.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
        return None

    async def _open(self, key: tuple, deadline: float) -> H1Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        from pipeline.fetch.netsafety import FetchRefused

        try:
            target = await self.pin(host, port)
        except FetchRefused as exc:
            raise ConnectionFailed(f"refused: {exc}") from exc
        addr, cport = target if isinstance(target, tuple) else (target, port)
        tls = None
        if scheme == "https":
            if self.ssl_context is None:
                self.ssl_context = ssl.create_default_context()
            tls = self.ssl_context
        budget = min(self.connect_timeout, deadline - loop.time())
        try:
            async with asyncio.timeout(max(0.0, budget)):
                _, conn = await loop.create_connection(lambda: H1Connection(loop), addr, cport, ssl=tls,
                                                       server_hostname=host if tls else None)
        except TimeoutError:
            if loop.time() >= deadline:
                raise DeadlineExpired("whole response not received in time") from None
            raise ConnectTimeout(f"Connection to {host} ({addr}) timed out. (connect timeout={self.connect_timeout})") \
                from None
        except OSError as exc:
            raise ConnectionFailed(f"Failed to establish a new connection to {addr}: {type(exc).__name__}: {exc}") \
                from exc
        return conn

    def release(self, key: tuple, conn: H1Connection) -> None:
        conns = self.idle.get(key)
        if conns is None:
            conns = self.idle[key] = []
            while len(self.idle) > self.num_pools:
                _, old = self.idle.popitem(last=False)
                for c in old:
                    c._close()
        else:
            self.idle.move_to_end(key)
        if len(conns) < self.maxsize:
            conns.append(conn)
        else:
            conn._close()

    def close(self) -> None:
        for conns in self.idle.values():
            for c in conns:
                c._close()
        self.idle.clear()
