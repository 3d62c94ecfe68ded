"""The tenant id (a GUID) of a domain, from the identity platform's OpenID configuration.

``GET <authority>/<domain>/v2.0/.well-known/openid-configuration`` answers for
any verified domain of a tenant (``contoso.com``, ``contoso.onmicrosoft.com``)
with an ``issuer`` of the form ``https://login.microsoftonline.com/{tenant id}/v2.0``;
an unknown domain gets ``400`` with ``AADSTS90002`` (tenant not found).
Nothing is signed in and no secret is sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import requests
from django.conf import settings

from connector.core.errors import SourceError
from connector.core.network import network_error

GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")


@dataclass(frozen=True)
class Tenant:
    domain: str
    tenant_id: str
    region: str  # tenant_region_scope, e.g. EU, NA; "" when not given


def lookup_tenant(authority: str, domain: str) -> Tenant:
    """The tenant of ``domain`` at ``authority``; a ``SourceError`` says why not."""
    domain = domain.strip().lower()
    if GUID.fullmatch(domain):
        return Tenant(domain, domain, "")
    if not DOMAIN.match(domain):
        raise SourceError(
            f"{domain or 'An empty value'} is not a domain name.",
            code="not-a-domain",
            hint="Enter a domain of the tenant, such as contoso.com or contoso.onmicrosoft.com.",
            step="token",
        )
    url = f"{authority.rstrip('/')}/{domain}/v2.0/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.EXCHANGE_REQUEST_TIMEOUT)
    except requests.RequestException as exc:
        error = network_error(exc, authority, step="token")
        if error is not None:
            raise error from None
        raise SourceError(
            f"The identity platform at {authority} could not be reached.",
            code="tenant-lookup",
            hint="Check the authority (https://login.microsoftonline.com, or a national "
            "cloud's host) and this machine's access to it.",
            retryable=True,
            step="token",
        ) from None
    try:
        body = response.json()
    except (json.JSONDecodeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    description = str(body.get("error_description") or "")
    if response.status_code == 400 and (
        "AADSTS90002" in description or body.get("error") == "invalid_tenant"
    ):
        raise SourceError(
            f"No tenant is known for {domain} at {authority} (AADSTS90002).",
            code="AADSTS90002",
            hint="Check the spelling; the domain must be verified in the tenant (Entra ID → "
            "Custom domain names), or use its contoso.onmicrosoft.com name. A tenant in a "
            "national cloud is found only at that cloud's authority "
            "(e.g. https://login.microsoftonline.us).",
            step="token",
        )
    match = GUID.search(str(body.get("issuer") or "")) if response.ok else None
    if match is None:
        raise SourceError(
            f"The identity platform at {authority} did not give a tenant for {domain} "
            f"(HTTP {response.status_code}).",
            code="tenant-lookup",
            hint="Check the authority: it must be the identity platform's host, such as "
            "https://login.microsoftonline.com.",
            retryable=response.status_code >= 500,
            step="token",
        )
    return Tenant(domain, match.group(0).lower(), str(body.get("tenant_region_scope") or ""))
