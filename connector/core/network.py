"""Network failures (TLS, DNS, refused, time-out) as SourceErrors with hints.

Shared by every source: they all speak HTTP through requests.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import requests

from connector.core.errors import SourceError


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc or url
    except ValueError:  # 'https://[x': the message names the URL as given
        return url


def network_error(exc: BaseException, url: str, *, step: str = "connect") -> SourceError | None:
    """The SourceError for a network-level failure, or None when exc is not one."""
    host = _host(url)
    text = repr(exc)
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError) or "CERTIFICATE_VERIFY" in text:
        return SourceError(
            f"The TLS certificate of {host} was not accepted.",
            code="tls",
            hint="The server's certificate is self-signed, expired or issued for another name. "
            "Install a certificate from a trusted CA on the server, or add the CA that issued it "
            "to a PEM file named by EXCHANGE_CA_BUNDLE in .env (REQUESTS_CA_BUNDLE does not "
            "count here).",
            step=step,
        )
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError) or "timed out" in text.lower():
        return SourceError(
            f"{host} did not answer in time.",
            code="timeout",
            hint="Exchange is slow or unreachable from this machine: check the firewall and "
            "the server's load, or raise EXCHANGE_REQUEST_TIMEOUT.",
            retryable=True,
            step=step,
        )
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError | OSError):
        lowered = text.lower()
        if any(
            marker in lowered
            for marker in (
                "name or service not known",
                "nodename nor servname",
                "getaddrinfo",
                "name resolution",
                "no address associated",
                "nameresolutionerror",
            )
        ):
            return SourceError(
                f"The host name {host.split(':')[0]} could not be resolved (DNS).",
                code="dns",
                hint="Check the spelling of the base URI, and that this machine's DNS "
                "servers know the name (nslookup on the server running ews-calendar).",
                retryable=True,
                step=step,
            )
        return SourceError(
            f"Could not connect to {host}.",
            code="connection",
            hint="Exchange is down, or a firewall or proxy blocks this machine: check that "
            f"https://{host}/ opens from the server running ews-calendar.",
            retryable=True,
            step=step,
        )
    return None
