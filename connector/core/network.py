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


# Where an exception keeps the one it wraps, besides __cause__ and __context__:
# urllib3's MaxRetryError.reason, requests' exceptions' first argument.
_WRAPPED = ("reason",)
_STDLIB = ("builtins", "socket", "ssl", "http.client")


def root_exception_name(exc: BaseException) -> str:
    """The name of the lowest exception of the standard library under ``exc``.

    requests wraps urllib3, which wraps the socket's own error: the last one
    (``ConnectionResetError``, ``ConnectionRefusedError``, ``TimeoutError``,
    ``gaierror``, ``SSLCertVerificationError``) is what an administrator can search.
    """
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    found = ""
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if type(current).__module__ in _STDLIB:
            found = type(current).__name__
        linked = [current.__cause__, current.__context__]
        linked += [getattr(current, name, None) for name in _WRAPPED]
        linked += list(current.args[:1]) if current.args else []
        queue += [link for link in linked if isinstance(link, BaseException)]
    return found or type(exc).__name__


def _service(step: str, service: str) -> str:
    if service:
        return service
    return "The identity platform" if step == "token" else "Exchange"


def network_error(
    exc: BaseException, url: str, *, step: str = "connect", service: str = ""
) -> SourceError | None:
    """The SourceError for a network-level failure, or None when exc is not one.

    ``service`` names who did not answer in the hint ("Exchange", "Microsoft
    Graph"); a failure of the token step is the identity platform's.
    """
    host = _host(url)
    text = repr(exc)
    upstream = root_exception_name(exc)
    who = _service(step, service)
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError) or "CERTIFICATE_VERIFY" in text:
        return SourceError(
            f"The TLS certificate of {host} was not accepted.",
            code="tls",
            hint="The server's certificate is self-signed, expired or issued for another name. "
            "Install a certificate from a trusted CA on the server, or add the CA that issued it "
            "to the trusted bundle of this application (REQUESTS_CA_BUNDLE).",
            step=step,
            upstream=upstream,
        )
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError) or "timed out" in text.lower():
        return SourceError(
            f"{host} did not answer in time.",
            code="timeout",
            hint=f"{who} is slow or unreachable from this machine: check the firewall and "
            "the server's load, or raise EXCHANGE_REQUEST_TIMEOUT.",
            retryable=True,
            step=step,
            upstream=upstream,
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
                upstream=upstream,
            )
        return SourceError(
            f"Could not connect to {host}.",
            code="connection",
            hint=f"{who} is down, or a firewall or proxy blocks this machine: check that "
            f"https://{host}/ opens from the server running ews-calendar.",
            retryable=True,
            step=step,
            upstream=upstream,
        )
    return None
