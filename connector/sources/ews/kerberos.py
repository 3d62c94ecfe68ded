"""Kerberos for on-premises Exchange (``gssnegotiate``), with the service account's password.

The PHP connector's ``gssnegotiate`` scheme is Kerberos. Here the application
obtains its own ticket-granting ticket from the domain controller with the
service account's user name and password (``gss_acquire_cred_with_password``,
an MIT Kerberos extension), kept in memory only: no keytab, no ``kinit``, no
machine account. The ticket is renewed by asking again before it expires, so
a process that runs for months keeps reading.

The HTTP side is requests-gssapi's SPNEGO ("Negotiate") handshake. What it
swallows, this module keeps: why the Key Distribution Center (KDC) refused the
account, or why Exchange refused the ticket (IIS answers a failed handshake
with a Kerberos error token in ``WWW-Authenticate: Negotiate``), so that the
console names the failure (clock skew, unknown account, wrong password, no
KDC, missing SPN) with its fix.

Where DNS does not find the realm's KDCs (no ``_kerberos._tcp`` SRV records),
``KERBEROS_REALM`` and ``KERBEROS_KDC`` in ``.env`` say where they are: a
krb5.conf for the application alone is written into DATA_DIR and used instead
of the system's ``/etc/krb5.conf``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests
from django.conf import settings

from connector.core.errors import SourceError

log = logging.getLogger(__name__)

try:  # gssapi needs the system's Kerberos libraries (Debian: libkrb5-dev to build)
    import gssapi
    import gssapi.raw
    from requests_gssapi import OPTIONAL, HTTPSPNEGOAuth
except ImportError:  # pragma: no cover - exercised on machines without Kerberos
    gssapi = None  # type: ignore[assignment]
    HTTPSPNEGOAuth = object
    OPTIONAL = 2

SPNEGO = "1.3.6.1.5.5.2"
RENEW_BEFORE = 300  # seconds of ticket lifetime left when a new ticket is asked for


def available() -> bool:
    return gssapi is not None


@dataclass(frozen=True)
class Failure:
    """One Kerberos failure as the library words it, and what the admin does about it."""

    marker: str  # a regular expression over MIT Kerberos' message (its com_err text)
    code: str  # the protocol's error name, to search and to quote
    message: str
    hint: str


# Read top down; {account}, {realm} and {host} are filled in. The markers are MIT Kerberos'
# texts of the KDC and AP error codes of RFC 4120 section 7.5.9.
FAILURES = (
    Failure(
        r"Server \S+ not found in Kerberos database",
        "KDC_ERR_S_PRINCIPAL_UNKNOWN",
        "The domain controller has no service principal HTTP/{host} for Exchange.",
        "Use Exchange's DNS name (not its IP address) in the server's URL, or register the "
        "name: setspn -S HTTP/{host} <the Exchange server's computer account, or its "
        "alternate service account>.",
    ),
    Failure(
        "Clock skew too great",
        "KRB_AP_ERR_SKEW",
        "Kerberos refused the ticket: the clocks differ by more than 5 minutes.",
        "Kerberos needs the clocks of this machine, the domain controller and {host} within "
        "5 minutes of each other: synchronise this machine with the domain controller "
        "(chrony or systemd-timesyncd, server = the DC) and check the time on {host}.",
    ),
    Failure(
        "not found in Kerberos database",
        "KDC_ERR_C_PRINCIPAL_UNKNOWN",
        "The domain controller does not know the account {account} in the realm {realm}.",
        "Check the service account's user name (user@REALM, or DOMAIN\\user with "
        "KERBEROS_REALM set to the Active Directory domain in capitals) and that the "
        "account exists and is enabled.",
    ),
    Failure(
        "Preauthentication failed",
        "KDC_ERR_PREAUTH_FAILED",
        "The domain controller refused the password of {account}.",
        "The service account's password is wrong or was changed: enter the current password "
        "in the admin (Service accounts).",
    ),
    Failure(
        "Password incorrect",
        "KDC_ERR_PREAUTH_FAILED",
        "The domain controller refused the password of {account}.",
        "The service account's password is wrong or was changed: enter the current password "
        "in the admin (Service accounts).",
    ),
    Failure(
        "Password has expired",
        "KDC_ERR_KEY_EXPIRED",
        "The password of {account} has expired.",
        "Set a new password for the service account in Active Directory (and consider "
        "'password never expires' for it), then enter it in the admin.",
    ),
    Failure(
        "credentials have been revoked",
        "KDC_ERR_CLIENT_REVOKED",
        "The domain controller refused {account}: the account is disabled or locked out.",
        "Enable or unlock the service account in Active Directory.",
    ),
    Failure(
        "Cannot contact any KDC",
        "KDC_UNREACH",
        "No Kerberos domain controller (KDC) of the realm {realm} answered.",
        "Set KERBEROS_KDC in .env to the domain controllers (dc1.contoso.com,dc2.contoso.com) "
        "when DNS has no _kerberos._tcp records for the realm, and check that this machine "
        "reaches them on port 88 (TCP and UDP).",
    ),
    Failure(
        "Cannot find KDC for realm",
        "KDC_UNKNOWN_REALM",
        "This machine does not know where the domain controllers of the realm {realm} are.",
        "Set KERBEROS_REALM (the Active Directory domain in capitals) and KERBEROS_KDC (its "
        "domain controllers) in .env.",
    ),
    Failure(
        "Ticket not yet valid",
        "KRB_AP_ERR_TKT_NYV",
        "Kerberos refused the ticket: it is not valid yet on {host}, so the clocks differ.",
        "Kerberos needs the clocks of this machine, the domain controller and {host} within "
        "5 minutes of each other: synchronise this machine with the domain controller "
        "(chrony or systemd-timesyncd, server = the DC) and check the time on {host}.",
    ),
)


def _principal(username: str) -> str:
    """user@REALM for the account as the admin typed it (UPN, DOMAIN\\user or user)."""
    realm = settings.KERBEROS_REALM
    if "\\" in username:
        domain, _, user = username.partition("\\")
        return f"{user}@{realm or domain.upper()}"
    if "@" in username:
        user, _, domain = username.rpartition("@")
        return f"{user}@{realm or domain.upper()}"
    return f"{username}@{realm}" if realm else username


def _realm_of(principal: str) -> str:
    return principal.rpartition("@")[2] or "the default realm"


_config_lock = threading.Lock()


def configure() -> None:
    """Point the Kerberos library at KERBEROS_REALM/KERBEROS_KDC when they are set."""
    realm, kdcs = settings.KERBEROS_REALM, settings.KERBEROS_KDC
    if not (realm and kdcs):
        return
    lines = [
        "# Written by ews-calendar from KERBEROS_REALM and KERBEROS_KDC; edits are replaced.",
        "[libdefaults]",
        f" default_realm = {realm}",
        " dns_lookup_kdc = false",
        " dns_lookup_realm = false",
        " rdns = false",
        " udp_preference_limit = 1",
        "[realms]",
        f" {realm} = {{",
        *(f"  kdc = {kdc}" for kdc in kdcs),
        " }",
    ]
    text = "\n".join(lines) + "\n"
    path = settings.DATA_DIR / "krb5.conf"
    with _config_lock:
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        os.environ["KRB5_CONFIG"] = str(path)


def failure(text: str, *, account: str, realm: str, host: str) -> SourceError:
    """The SourceError for a message of the Kerberos library."""
    for row in FAILURES:
        if re.search(row.marker, text, re.IGNORECASE):
            names = {"account": account, "realm": realm, "host": host}
            return SourceError(
                row.message.format(**names),
                code=row.code,
                hint=row.hint.format(**names),
                step="connect",
            )
    return SourceError(
        f"Kerberos failed for {account}: {text.strip()}",
        code="kerberos",
        hint="Check the service account, KERBEROS_REALM/KERBEROS_KDC in .env, and that "
        f"{host} accepts Kerberos (Negotiate) for EWS.",
        step="connect",
    )


def _message(error: Any) -> str:
    """The minor (mechanism) message first: it says what the KDC or the server said."""
    try:
        return str(error.gen_message())
    except Exception:  # pragma: no cover - gen_message itself failing
        return str(error)


class Tickets:
    """The account's ticket-granting ticket, in memory, asked for again before it expires."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.principal = _principal(username)
        self._password = password
        self._lock = threading.Lock()
        self._creds: Any = None

    def __repr__(self) -> str:  # never the password
        return f"Tickets({self.principal!r})"

    def credentials(self, host: str) -> Any:
        with self._lock:
            if self._creds is not None:
                try:
                    if self._creds.lifetime > RENEW_BEFORE:
                        return self._creds
                except gssapi.exceptions.GSSError:  # expired: ask again
                    pass
            configure()
            try:
                name = gssapi.Name(self.principal, gssapi.NameType.user)
                acquired = gssapi.raw.acquire_cred_with_password(
                    name,
                    self._password.encode("utf-8"),
                    usage="initiate",
                    mechs=[gssapi.OID.from_int_seq(SPNEGO)],
                )
            except gssapi.exceptions.GSSError as exc:
                raise failure(
                    _message(exc),
                    account=self.username,
                    realm=_realm_of(self.principal),
                    host=host,
                ) from None
            self._creds = gssapi.Credentials(acquired.creds)
            log.info("Kerberos: new ticket for %s", self.principal)
            return self._creds


class KerberosAuth(HTTPSPNEGOAuth):  # type: ignore[misc,valid-type]
    """requests-gssapi's Negotiate handshake with the account's own ticket, failing loudly.

    A handshake that ends in 401 raises SourceError with the reason: the KDC's
    (when asking for the service ticket) or Exchange's (its error token).
    """

    def __init__(self, tickets: Tickets) -> None:
        super().__init__(mutual_authentication=OPTIONAL)
        self.tickets = tickets
        self._refusal = threading.local()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        host = urlparse(request.url or "").hostname or ""
        self.creds = self.tickets.credentials(host)
        self._refusal.text = ""
        return super().__call__(request)  # type: ignore[no-any-return]

    def generate_request_header(self, response: Any, host: str, is_preemptive: bool = False) -> Any:
        try:
            return super().generate_request_header(response, host, is_preemptive)
        except Exception as exc:
            # Keep the first reason: Exchange's error token is stepped before this runs.
            if not getattr(self._refusal, "text", ""):
                self._refusal.text = str(exc)
            raise

    def handle_response(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code == 401 and kwargs.get("num_401s", 0) >= 1:
            # Exchange refused our ticket; its Negotiate token (if any) says why.
            token = _negotiate_token(response)
            host = urlparse(response.url).hostname or ""
            context = self.context.get(host)
            if token and context is not None:
                try:  # python-gssapi may raise the step's error at the next use instead
                    context.step(token)
                    context.complete  # noqa: B018
                except gssapi.exceptions.GSSError as exc:
                    self._refusal.text = _message(exc)
        answer = super().handle_response(response, **kwargs)
        if answer.status_code == 401 and kwargs.get("num_401s", 0) == 0:
            host = urlparse(answer.url).hostname or ""
            reason = getattr(self._refusal, "text", "")
            if reason:
                raise failure(
                    reason,
                    account=self.tickets.username,
                    realm=_realm_of(self.tickets.principal),
                    host=host,
                )
        return answer  # type: ignore[no-any-return]


def _negotiate_token(response: requests.Response) -> bytes | None:
    for offer in response.headers.get("WWW-Authenticate", "").split(","):
        scheme, _, value = offer.strip().partition(" ")
        if scheme.lower() == "negotiate" and value.strip():
            try:
                return base64.b64decode(value.strip())
            except ValueError:
                return None
    return None


def not_installed(host: str) -> SourceError:
    return SourceError(
        f"{host} is set to Kerberos (gssnegotiate), but Kerberos support is not installed.",
        code="kerberos-not-installed",
        hint="Install the system's Kerberos libraries (Debian/Ubuntu: apt-get install "
        "libkrb5-dev) and run scripts/run again: it then installs gssapi and requests-gssapi. "
        "Or choose NTLM for this server.",
        step="connect",
    )
