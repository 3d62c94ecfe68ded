"""Where EWS answers for a server: its base URI, or what Autodiscover v2 says.

A server configured with a mailbox (or a URL) for autodiscover instead of a
base URI has its EWS URL looked up with the Autodiscover v2 JSON endpoint, as
Outlook does, and remembered on the Server row (``ews_endpoint``), so that it is
looked up once per server, not on every refresh. The EWS source looks it up
again when the remembered endpoint stops answering (source.py).
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import requests
from django.conf import settings
from django.utils import timezone

from connector.core.errors import SourceError
from connector.core.network import network_error
from connector.core.tls import trusted_session
from connector.core.trace import Trace
from connector.models import Server

AUTODISCOVER_PATH = "/autodiscover/autodiscover.json/v1.0/{mailbox}?Protocol=EWS"


def autodiscover_urls(target: str) -> list[str]:
    """Where the Autodiscover v2 JSON endpoint may answer for a server's autodiscover value.

    A URL names the host; a mailbox names its domain, tried as autodiscover.<domain>
    and then <domain> itself, as Outlook does.
    """
    target = target.strip()
    if "://" in target:
        parts = urlsplit(target)
        return [f"{parts.scheme}://{parts.netloc}"]
    domain = target.rpartition("@")[2].lower()
    return [f"https://autodiscover.{domain}", f"https://{domain}"]


def discovered(server: Server) -> bool:
    """The server's EWS URL comes from Autodiscover (it has no base URI)."""
    return bool(server.autodiscover and not server.base_uri)


def endpoint(server: Server, resource: str, username: str, trace: Trace) -> str:
    """The EWS URL to read ``resource`` at: the base URI's, or the one Autodiscover gave."""
    if not server.base_uri and not server.autodiscover:
        raise SourceError(
            f"The server {server} has neither a base URI nor an autodiscover value.",
            code="no-endpoint",
            hint="Give the base URI of Exchange (https://mail.example.com) or a mailbox "
            "for autodiscover in the server's settings.",
            step="connect",
        )
    if not discovered(server):
        base = server.base_uri.rstrip("/")
        if base.lower().endswith("/ews/exchange.asmx"):
            return base
        return f"{base}/EWS/Exchange.asmx"
    if server.ews_endpoint:
        return server.ews_endpoint
    return discover(server, resource, username, trace)


def discover(server: Server, resource: str, username: str, trace: Trace, failed: str = "") -> str:
    """Find the EWS URL with Autodiscover v2 and remember it on the server."""
    target = server.autodiscover
    candidates = [
        target if "://" not in target else "",
        resource,
        username,
    ]
    mailbox = next((c for c in candidates if "@" in c), "")
    with trace.step("autodiscover", "Find the EWS endpoint (Autodiscover)") as step:
        if not mailbox:
            raise SourceError(
                "Autodiscover needs a mailbox address to look up.",
                code="autodiscover",
                hint="Give a mailbox (someone@example.com) as the server's autodiscover "
                "value, or a resource, or set the base URI instead.",
                step="autodiscover",
            )
        problems: list[str] = []
        for base in autodiscover_urls(target):
            url = base + AUTODISCOVER_PATH.format(mailbox=quote(mailbox, safe="@"))
            try:
                with trusted_session() as session:
                    response = session.get(
                        url,
                        timeout=settings.EXCHANGE_REQUEST_TIMEOUT,
                        headers={"Accept": "application/json"},
                        allow_redirects=True,
                    )
                answer = response.json() if response.ok else {}
                found = str(answer.get("Url") or "") if isinstance(answer, dict) else ""
            except (requests.RequestException, ValueError) as exc:
                error = network_error(exc, base, step="autodiscover")
                problems.append(f"{base}: {error.message if error else type(exc).__name__}")
                continue
            if not found:
                problems.append(f"{base}: HTTP {response.status_code}")
                continue
            if urlsplit(found).scheme != "https" and urlsplit(base).scheme == "https":
                # Credentials never go in clear text to where an answer points.
                problems.append(f"{base}: refused the non-HTTPS endpoint {found}")
                continue
            step.note(f"{mailbox} → {found}")
            if failed:
                step.note(f"replaces {failed}, which failed")
            Server.objects.filter(pk=server.pk).update(
                ews_endpoint=found, ews_endpoint_discovered=timezone.now()
            )
            server.ews_endpoint = found
            server.ews_endpoint_discovered = timezone.now()
            return found
        raise SourceError(
            f"Autodiscover found no EWS endpoint for {mailbox}.",
            code="autodiscover",
            hint="Tried " + "; ".join(problems) + ". Check the autodiscover DNS record "
            "(autodiscover.<domain>) and that Autodiscover v2 answers "
            "/autodiscover/autodiscover.json, or set the server's base URI instead.",
            retryable=True,
            step="autodiscover",
        )
