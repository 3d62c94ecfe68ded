"""Which certificate authorities every Exchange, Graph and identity request trusts.

The public CAs (certifi's bundle, as requests uses it), plus the private CA
of an on-premises Exchange when EXCHANGE_CA_BUNDLE names its PEM file. Nothing
else: requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE replace its trust for
every request that does not pass ``verify`` itself, which would let a variable
of the process environment (set for another program, or by a service manager)
silently decide whom ews-calendar sends passwords and tokens to. TrustedAdapter
ignores any ``verify`` it is given and uses this trust, on every session the
sources (EWS through exchangelib, Graph, iCalendar, Autodiscover) and msal use.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from requests.certs import where as public_bundle
from urllib3.util.ssl_ import create_urllib3_context


def ca_bundle() -> str:
    """The private CA bundle in force ("" for the public CAs only)."""
    return str(getattr(settings, "EXCHANGE_CA_BUNDLE", "") or "")


@functools.cache
def _context(bundle: str) -> ssl.SSLContext:
    context = create_urllib3_context()
    context.load_verify_locations(cafile=public_bundle())
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


def trusted_context() -> ssl.SSLContext:
    """The TLS context of the CAs in force (made once per bundle path)."""
    return _context(ca_bundle())


class TrustedAdapter(HTTPAdapter):
    """An HTTPAdapter that always verifies certificates against trusted_context()."""

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        # Whatever verify says (REQUESTS_CA_BUNDLE merged in by the session): ours.
        return super().send(
            request, stream=stream, timeout=timeout, verify=True, cert=cert, proxies=proxies
        )

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: bool | str, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, True, cert)
        if host_params.get("scheme") == "https":
            # Part of the pool key: a changed bundle gets new connections.
            pool_kwargs["ssl_context"] = trusted_context()
        return host_params, pool_kwargs


def trust(session: requests.Session, **adapter_options: Any) -> requests.Session:
    """Mount TrustedAdapter on ``session`` for http and https; returns the session."""
    adapter = TrustedAdapter(**adapter_options)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def trusted_session() -> requests.Session:
    return trust(requests.Session())
