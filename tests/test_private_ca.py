"""A private certificate authority (EXCHANGE_CA_BUNDLE), and nothing the environment says.

An on-premises Exchange often has a certificate of the organisation's own CA. The
setting adds that CA to the public ones for every Exchange, Graph and identity
request; REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE, which requests would otherwise
let replace its trust, change nothing. The CA here is made at test time with
``cryptography``; the origin is an HTTPS server on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accounts.models import AppRegistration
from connector.models import Server
from connector.services.connection_test import run_connection_test
from tests.fakes.ews import FakeExchange
from tests.fakes.identity import FakeIdentityPlatform

ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//private ca//EN\r\nEND:VCALENDAR\r\n"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class PrivateCA:
    bundle: Path  # the CA's certificate (PEM), what EXCHANGE_CA_BUNDLE names
    cert_file: Path  # the server's certificate chain
    key_file: Path


def make_private_ca(folder: Path) -> PrivateCA:
    """A self-signed CA, and a certificate for 127.0.0.1 and localhost issued by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Contoso private CA (test)"))
        .issuer_name(_name("Contoso private CA (test)"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("mail.contoso.test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    ca = PrivateCA(folder / "private-ca.pem", folder / "server.pem", folder / "server.key")
    ca.bundle.write_bytes(ca_cert.public_bytes(pem))
    ca.cert_file.write_bytes(cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    ca.key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca


class _Calendar(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200)
        self.send_header("Content-Type", "text/calendar")
        self.send_header("Content-Length", str(len(ICS)))
        self.end_headers()
        self.wfile.write(ICS)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def private_ca(tmp_path: Path) -> PrivateCA:
    return make_private_ca(tmp_path)


@pytest.fixture
def origin(private_ca: PrivateCA) -> Iterator[str]:
    """An HTTPS server on loopback whose certificate only the private CA vouches for."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Calendar)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(private_ca.cert_file, private_ca.key_file)
    # Handshake failures are the point of some tests: keep them out of the output.
    server.handle_error = lambda *args: None  # type: ignore[method-assign]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def read_origin(url: str) -> Any:
    from connector.sources.ics import clear_cache

    clear_cache()  # no session or copy kept from another setting
    return run_connection_test(Server(server_id="files", type="ics", base_uri=url + "/"), "a.ics")


pytestmark = pytest.mark.django_db


def test_with_the_setting_the_private_ca_is_trusted(
    origin: str, private_ca: PrivateCA, settings: Any
) -> None:
    settings.EXCHANGE_CA_BUNDLE = str(private_ca.bundle)
    result = read_origin(origin)
    assert result.ok, (result.headline, result.details)


def test_without_the_setting_the_certificate_is_refused_plainly(origin: str, settings: Any) -> None:
    settings.EXCHANGE_CA_BUNDLE = ""
    result = read_origin(origin)
    assert not result.ok
    assert result.code == "tls"
    assert "TLS certificate of 127.0.0.1" in result.headline
    assert "EXCHANGE_CA_BUNDLE" in result.hint


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_the_environment_does_not_change_whom_we_trust(
    origin: str,
    private_ca: PrivateCA,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    settings.EXCHANGE_CA_BUNDLE = ""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv(variable, str(private_ca.bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(private_ca.bundle))
    result = read_origin(origin)
    assert not result.ok
    assert result.code == "tls"


def test_exchange_over_ews_follows_the_setting_not_the_environment(
    ews_server: Server, fake_ews: FakeExchange, settings: Any, trusted_fake_ca: Any
) -> None:
    from connector.sources.ews import reset_pool

    # The fakes' CA is in REQUESTS_CA_BUNDLE (tests/conftest.py) all along.
    settings.EXCHANGE_CA_BUNDLE = ""
    reset_pool()
    refused = run_connection_test(ews_server, "room-a@contoso.com")
    assert (refused.ok, refused.code) == (False, "tls")
    assert fake_ews.count_op("FindItem") == 0

    settings.EXCHANGE_CA_BUNDLE = trusted_fake_ca.bundle
    reset_pool()
    read = run_connection_test(ews_server, "room-a@contoso.com")
    assert read.ok, (read.headline, read.details)


def test_identity_platform_follows_the_setting_not_the_environment(
    app_registration: AppRegistration,
    fake_identity: FakeIdentityPlatform,
    settings: Any,
    trusted_fake_ca: Any,
) -> None:
    from accounts.tokens import acquire_token, clear_clients
    from connector.core.errors import SourceError

    settings.EXCHANGE_CA_BUNDLE = ""
    clear_clients()
    with pytest.raises(SourceError) as refused:
        acquire_token(app_registration, "https://graph.microsoft.com/.default")
    assert "certificate" in (refused.value.message + refused.value.hint).lower()
    assert fake_identity.token_requests() == 0

    settings.EXCHANGE_CA_BUNDLE = trusted_fake_ca.bundle
    clear_clients()
    token = acquire_token(app_registration, "https://graph.microsoft.com/.default")
    assert fake_identity.is_valid_token(token.token, audience="https://graph.microsoft.com")


def test_a_bundle_that_is_not_a_file_stops_start_up(tmp_path: Path) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from connector.settings import parse_ca_bundle

    with pytest.raises(ImproperlyConfigured, match="EXCHANGE_CA_BUNDLE"):
        parse_ca_bundle(str(tmp_path / "missing.pem"))
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ImproperlyConfigured, match="no PEM certificate"):
        parse_ca_bundle(str(empty))
    assert parse_ca_bundle("") == ""
