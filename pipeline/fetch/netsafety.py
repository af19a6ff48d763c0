"""Address safety for fetching links from the open web.

A link may point anywhere, so before any connection its host is resolved and
every address it has must be public (``is_public_address``: no loopback,
private, link-local, multicast or reserved addresses); the connection then goes
to the address that was checked, pinned in the connection layer
(``pinned_pool_manager``), so a second DNS answer cannot turn the request to
127.0.0.1 or a cloud metadata address (DNS rebinding); TLS is still verified
against the host name. Credentials in a link (``user:password@``) are someone
else's: stripped before anything is sent or stored (``without_credentials``).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


def without_credentials(url: str) -> str:
    """The URL without ``user:password@``: credentials in a link are someone else's;
    they are never sent (requests would turn them into ``Authorization: Basic``)
    nor stored in a WARC record."""
    if "@" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


class FetchRefused(Exception):
    def __init__(self, outcome: str, detail: str = ""):
        super().__init__(f"{outcome}: {detail}")
        self.outcome = outcome
        self.detail = detail


def is_public_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast and not addr.is_reserved


def resolve_public(host: str, port: int) -> str:
    """The first address of ``host``, after checking that every address it
    resolves to is public (loopback, private, link-local, reserved refused)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        # "no such host": the name does not exist (a dead domain; live-then-archive asks
        # the archives), unlike a resolver that failed for now (EAI_AGAIN)
        gone = exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
        raise FetchRefused("dns_error", f"{'no such host: ' if gone else ''}{host}: {exc}") from exc
    for info in infos:
        ip = info[4][0]
        if not is_public_address(ip):
            raise FetchRefused("refused_private_address", f"{host} resolves to {ip}")
    return infos[0][4][0]


def check_public(url: str) -> str:
    """Refuse URLs whose host resolves to loopback, private, link-local or other
    non-public addresses (checked on every redirect hop too); returns the address."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise FetchRefused("invalid_url", url)
    return resolve_public(host, parts.port or (443 if parts.scheme == "https" else 80))


class RefusedAddress(OSError):
    """Raised at connect time for a host that does not resolve to public addresses only."""


class _PinnedConnection:
    """Connects to the address that was checked, never to a second DNS answer.

    Without this a host could answer the check with a public address and the
    connection with 127.0.0.1 or 169.254.169.254 (DNS rebinding). TLS still
    verifies the certificate against the host name (``self.host`` is unchanged;
    only the socket's target is pinned)."""

    pin = None  # set on the per-adapter subclasses: (host, port) -> address
    on_socket = None  # and: called with the socket that serves each request (new or pooled)

    def _new_conn(self):
        from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
        from urllib3.util import connection as u3conn

        try:
            ip = type(self).pin(self.host, self.port)
        except FetchRefused as exc:
            raise NewConnectionError(self, f"refused: {exc}") from RefusedAddress(str(exc))
        ip, port = ip if isinstance(ip, tuple) else (ip, self.port)  # (address, port): a mapped host
        try:
            sock = u3conn.create_connection((ip, port), self.timeout, source_address=self.source_address,
                                            socket_options=self.socket_options)
        except socket.timeout as exc:
            raise ConnectTimeoutError(self, f"Connection to {self.host} ({ip}) timed out") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection to {ip}: {exc}") from exc
        if type(self).on_socket is not None:
            type(self).on_socket(sock)
        return sock

    def request(self, *args, **kwargs):
        if type(self).on_socket is not None:
            type(self).on_socket(self.sock)  # a pooled connection: its socket serves this request now
        return super().request(*args, **kwargs)


def pinned_pool_manager(pin, on_socket=None, **kw):
    """A urllib3 PoolManager (thread-safe, keep-alive per host) whose connections go to
    ``pin(host, port)``; ``on_socket`` (optional) is told the socket of every request
    (the whole-response deadlines). ``kw``: PoolManager's arguments."""
    import urllib3
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    attrs = {"pin": staticmethod(pin), "on_socket": staticmethod(on_socket) if on_socket else None}
    conn = type("PinnedHTTPConnection", (_PinnedConnection, HTTPConnection), attrs)
    sconn = type("PinnedHTTPSConnection", (_PinnedConnection, HTTPSConnection), dict(attrs))
    pool = type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": conn})
    spool = type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": sconn})
    pm = urllib3.PoolManager(**kw)
    pm.pool_classes_by_scheme = {"http": pool, "https": spool}
    return pm
