"""``[fetch] resolve`` as curl --resolve (issue #31): the URL's scheme is kept (an https
link is fetched over TLS, its certificate checked against the host's name, through the
mapped address), and the mapped address is allowed on its own, without
``allow_private_addresses``, while everything else private stays refused."""

import datetime as dt
import ssl
from http.server import BaseHTTPRequestHandler

import pytest
from webtext_testlib import test_fetch_config

from flows.demo import LoopbackServer
from pipeline.core.urls import normalize_url, url_id
from pipeline.fetch.outcomes import read_outcomes
from pipeline.fetch.stage import fetch_links

PAGE = ("<html><head><title>Secure story</title></head><body><article><h1>Secure story</h1>"
        + "<p>A story served over TLS from a mirror, with enough words to be a document of its own.</p>" * 8
        + "</article></body></html>").encode()


def _ca_and_cert(tmp_path, host: str):
    """A test CA and a certificate for HOST signed by it (files: ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webtext test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(pem))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    return tmp_path / "ca.pem"


class Site(LoopbackServer):
    """One page at /story and a redirect at /away to an unmapped loopback URL; over TLS
    when given a certificate. Records the Host header and whether TLS was used."""

    def __init__(self, cert_dir=None):
        self.seen: list[tuple[str, str, bool]] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                site.seen.append((self.path, self.headers.get("Host"), isinstance(self.connection, ssl.SSLSocket)))
                if self.path == "/away":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{site.port}/story")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.end_headers()
                self.wfile.write(PAGE)

        super().__init__(Handler)
        if cert_dir is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(cert_dir / "cert.pem", cert_dir / "key.pem")
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)


def _rows(*urls):
    return [{"id": url_id(normalize_url(u)), "url": u, "url_norm": normalize_url(u)} for u in urls]


def _cfg(site, host, **kw):
    return test_fetch_config(allow_private_addresses=False, resolve={host: site.address}, **kw)


def test_an_https_link_to_a_mapped_host_is_fetched_over_tls_checked_against_its_name(tmp_path, monkeypatch):
    host = "secure.example"
    ca = _ca_and_cert(tmp_path, host)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # OpenSSL's default trust store: the test CA
    with Site(tmp_path) as site:
        s = fetch_links(_rows(f"https://{host}/story"), tmp_path / "f", _cfg(site, host))
    (rec,) = read_outcomes(tmp_path / "f").values()
    assert rec["outcome"] == "ok" and s.n_out == 1
    assert site.seen == [("/story", host, True)]  # TLS, and the link's own Host


def test_an_https_link_is_never_downgraded_to_plain_http(tmp_path):
    """The mapped address speaks plain HTTP: the https link fails its TLS handshake
    (once it was fetched over plain HTTP, silently)."""
    with Site() as site:
        fetch_links(_rows("https://plain.example/story"), tmp_path / "f", _cfg(site, "plain.example", retries=0))
    (rec,) = read_outcomes(tmp_path / "f").values()
    assert rec["outcome"] != "ok" and not any(p == "/story" for p, _, _ in site.seen)


def test_a_wrong_certificate_is_refused_through_the_mapping(tmp_path, monkeypatch):
    ca = _ca_and_cert(tmp_path, "other.example")  # the certificate names another host
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with Site(tmp_path) as site:
        fetch_links(_rows("https://secure.example/story"), tmp_path / "f", _cfg(site, "secure.example", retries=0))
    (rec,) = read_outcomes(tmp_path / "f").values()
    assert rec["outcome"] != "ok" and site.seen == []


def test_resolve_alone_allows_exactly_the_mapped_address(tmp_path):
    """No allow_private_addresses: the mapped host (a loopback address) is fetched; a
    redirect from it to an unmapped loopback URL, and a link to one, stay refused."""
    with Site() as site:
        direct = f"http://127.0.0.1:{site.port}/story"
        fetch_links(_rows("http://mirror.example/story", "http://mirror.example/away", direct), tmp_path / "f",
                    _cfg(site, "mirror.example"))
    out = {r["url"]: r for r in read_outcomes(tmp_path / "f").values()}
    assert out["http://mirror.example/story"]["outcome"] == "ok"
    assert out["http://mirror.example/away"]["outcome"] == "refused_private_address"
    assert out[direct]["outcome"] == "refused_private_address"
    assert [p for p, _, _ in site.seen].count("/story") == 1


@pytest.mark.parametrize("bad", ["127.0.0.1", "127.0.0.1:port", "http://127.0.0.1:80", "", "a@b:80"])
def test_a_malformed_mapping_is_refused_at_start(bad):
    from pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="fetch.resolve"):
        test_fetch_config(resolve={"x.example": bad})
