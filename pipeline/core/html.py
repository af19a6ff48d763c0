"""Decoding HTML bodies: the HTTP header's charset, then the page's meta tags,
then detection (charset-normalizer); the first that decodes cleanly wins."""

from __future__ import annotations

import codecs
import re
import zlib

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("'\"")).name
    except LookupError:
        return None


def header_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    m = re.search(r"charset\s*=\s*[\"']?([^\s;\"']+)", content_type, re.I)
    return _codec(m.group(1)) if m else None


def meta_charset(body: bytes) -> str | None:
    m = _META_CHARSET.search(body[:8192])
    return _codec(m.group(1).decode("ascii", "ignore")) if m else None


def decode_content_encoding(body: bytes, encoding: str | None, limit: int, lenient: bool = False) -> bytes:
    """Undo gzip/deflate Content-Encoding, never producing more than ``limit`` bytes
    (ValueError beyond). ``deflate`` is tried zlib-wrapped (RFC 9110) and then raw
    (what many servers send). LENIENT: a body that does not decode but already
    looks like markup is returned as it is (WARCs that kept the header but stored
    the decoded body, as ClueWeb09's did); otherwise zlib.error."""
    enc = (encoding or "").lower().strip()
    if enc in ("gzip", "x-gzip"):
        tries = [16 + zlib.MAX_WBITS]
    elif enc == "deflate":
        tries = [zlib.MAX_WBITS, -zlib.MAX_WBITS]
    else:
        return body
    err: zlib.error | None = None
    for wbits in tries:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, limit)
        except zlib.error as exc:
            err = exc
            continue
        if d.unconsumed_tail:
            raise ValueError(f"body expands beyond {limit} bytes")
        return out
    if lenient and body.lstrip()[:1] == b"<":
        return body
    raise err


def utf16_bom(body: bytes) -> str | None:
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    return None


_LATIN_FAMILY = {
    "cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_1", "iso8859_2", "iso8859_3", "iso8859_4",
    "iso8859_9", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16", "mac_latin2",
    "mac_roman", "mac_iceland", "cp850", "cp437", "cp858",
}


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """(text, how) where how names the charset and where it came from."""
    bom = utf16_bom(body)
    if bom:  # a byte-order mark outranks what the header and meta say (HTML's own rule)
        try:
            return body.decode(bom), f"{bom} (byte-order mark)"
        except UnicodeDecodeError:
            pass
    for source, cs in (("header", header_charset(content_type)), ("meta", meta_charset(body))):
        if cs:
            try:
                return body.decode(cs), f"{cs} ({source})"
            except (UnicodeDecodeError, LookupError):
                continue
    try:
        return body.decode("utf-8"), "utf-8 (valid)"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    if best is not None:
        enc = best.encoding
        if enc in _LATIN_FAMILY:
            # Short Western pages are ambiguous between the Latin code pages; HTML5's
            # default for such pages in an English locale is windows-1252.
            try:
                return body.decode("cp1252"), "cp1252 (detected latin)"
            except UnicodeDecodeError:
                pass
        return body.decode(enc, errors="replace"), f"{enc} (detected)"
    return body.decode("utf-8", errors="replace"), "utf-8 (replaced)"
