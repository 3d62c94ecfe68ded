"""Exchange servers (and iCalendar sources) that calendars read from."""

from __future__ import annotations

from urllib.parse import urljoin

from django.core.exceptions import ValidationError
from django.db import models

# GRAPH_DEFAULT_BASE_URI lives beside the identity platform's authority (the delegated
# sign-in needs it, and accounts imports nothing of connector's models); the sources
# and the XML reader import it from here.
from accounts.models import GRAPH_DEFAULT_BASE_URI, AppRegistration, ServiceAccount
from connector.validators import is_http_url, path_inside, split_url, url_origin, url_safe_id

# Hosts of Exchange Online's EWS, where EWS is being switched off (SPEC).
EXCHANGE_ONLINE_EWS_HOSTS = (
    "outlook.office365.com",
    "outlook.office.com",
    "outlook.office365.us",  # GCC High
    "outlook-dod.office365.us",  # DoD
    "partner.outlook.cn",  # operated by 21Vianet
)
EXCHANGE_ONLINE_EWS_WARNING = (
    "This server uses EWS in Exchange Online, which Microsoft blocks since 1 October 2026 "
    "for tenants that have not allow-listed the application and switches off for good on "
    "1 April 2027. Switch it to Microsoft Graph (type graph, with an app registration "
    "holding the Calendars.Read application permission)."
)


class Server(models.Model):
    class Type(models.TextChoices):
        EWS = "ews", "Exchange Web Services"
        GRAPH = "graph", "Microsoft Graph"
        ICS = "ics", "iCalendar file or URL"

    class Scheme(models.TextChoices):
        NTLM = "ntlm", "NTLM"
        BASIC = "basic", "Basic"
        DIGEST = "digest", "Digest"
        GSSNEGOTIATE = "gssnegotiate", "Kerberos (Negotiate)"

    server_id = models.CharField(
        "id",
        max_length=100,
        unique=True,
        validators=[url_safe_id],
        help_text='The id calendars refer to (server="url(#id)" in configuration.xml).',
    )
    type = models.CharField(max_length=10, choices=Type.choices, default=Type.EWS)
    base_uri = models.CharField(
        "base URI",
        max_length=500,
        blank=True,
        help_text="EWS: https://mail.example.com (EWS is at <base URI>/EWS/Exchange.asmx). "
        "Graph: https://graph.microsoft.com. ICS: a URL or folder that resources are relative to.",
    )
    autodiscover = models.CharField(
        max_length=500,
        blank=True,
        help_text="EWS only, instead of a base URI: a mailbox (someone@example.com) or an "
        "autodiscover URL; the EWS endpoint found is remembered until it fails.",
    )
    label = models.CharField(max_length=200, blank=True)
    http_scheme = models.CharField(
        "HTTP authentication",
        max_length=20,
        choices=Scheme.choices,
        default=Scheme.NTLM,
        help_text="On-premises EWS with a service account only.",
    )
    service_account = models.ForeignKey(
        ServiceAccount,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="servers",
        help_text="HTTP authentication (on-premises EWS; optional for ICS URLs).",
    )
    app_registration = models.ForeignKey(
        AppRegistration,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="servers",
        help_text="OAuth2 (Exchange Online through EWS or Graph).",
    )
    # What connecting taught us; kept so that a new process asks nothing twice.
    ews_version = models.CharField(max_length=50, blank=True, editable=False)
    ews_endpoint = models.CharField(max_length=500, blank=True, editable=False)
    ews_endpoint_discovered = models.DateTimeField(null=True, blank=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["server_id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(type__in=["ews", "graph", "ics"]), name="server_type_known"
            ),
            models.CheckConstraint(
                condition=~(
                    models.Q(service_account__isnull=False)
                    & models.Q(app_registration__isnull=False)
                ),
                name="server_one_credential",
            ),
        ]

    def __str__(self) -> str:
        return self.label or self.server_id

    @property
    def auth_type(self) -> str:
        """The configuration.xml authentication type of this server."""
        if self.app_registration_id:
            if (
                self.app_registration
                and self.app_registration.flow == AppRegistration.Flow.DELEGATED
            ):
                return "oauth2-delegated"
            return "oauth2-client-credentials"
        if self.service_account_id:
            return "http-authentication"
        return "none"

    @property
    def points_at_exchange_online_ews(self) -> bool:
        """EWS aimed at Exchange Online, which is being switched off (SPEC)."""
        if self.type != self.Type.EWS:
            return False
        parts = split_url(self.base_uri)
        host = ((parts.hostname if parts else None) or "").lower()
        return host in EXCHANGE_ONLINE_EWS_HOSTS

    def ews_url(self) -> str:
        """The EWS endpoint: <base URI>/EWS/Exchange.asmx, or the one autodiscover found."""
        base = self.base_uri.rstrip("/")
        if not base:
            return self.ews_endpoint
        if base.lower().endswith("/ews/exchange.asmx"):
            return base
        return f"{base}/EWS/Exchange.asmx"

    # -- iCalendar resources: where they are, and whether credentials may go there --------
    @property
    def origin(self) -> tuple[str, str, int] | None:
        """Scheme, host and port of the base URI: the one place its credentials go (SPEC)."""
        return url_origin(self.base_uri.strip())

    def ics_url(self, resource: str) -> str | None:
        """The URL an ``ics`` resource names: itself, or joined to a URL base URI.

        None for a file (a path under a folder base URI). ``//host/x`` is relative
        to the scheme only, so it may name another host: callers check the result,
        never the resource as written.
        """
        if is_http_url(resource):
            return resource
        base = self.base_uri.strip()
        if not is_http_url(base):
            return None
        if not resource:
            return base
        try:
            return urljoin(base if base.endswith("/") else base + "/", resource)
        except ValueError:  # 'https://[x': no URL, no file either; a fetch says so
            return resource

    def contains_resource(self, resource: str) -> bool:
        """Whether an ``ics`` resource stays under the base URI (its origin and path).

        A file path counts as inside: the source reads only under the base folder.
        Pointing a calendar anywhere else needs the right to change servers.
        """
        url = self.ics_url(resource)
        if url is None:
            return not is_http_url(resource)
        base = self.base_uri.strip()
        if not is_http_url(base) or url_origin(url) is None or url_origin(url) != self.origin:
            return False
        url_parts, base_parts = split_url(url), split_url(base)
        if url_parts is None or base_parts is None:
            return False
        return path_inside(url_parts.path, base_parts.path)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.base_uri and self.type != self.Type.ICS:
            parts = split_url(self.base_uri)
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                errors["base_uri"] = "Give a URL such as https://mail.example.com."
        base_uri_problem = _base_uri_problem(self.base_uri, folder_allowed=self.type == "ics")
        if base_uri_problem:
            errors["base_uri"] = base_uri_problem
        if self.type == self.Type.EWS:
            if not self.base_uri and not self.autodiscover:
                errors["base_uri"] = "Give a base URI, or a mailbox or URL for autodiscover."
            if not self.service_account_id and not self.app_registration_id:
                errors["service_account"] = (
                    "EWS needs a service account (on premises) or an app registration "
                    "(Exchange Online)."
                )
        elif self.type == self.Type.GRAPH:
            if self.service_account_id:
                errors["service_account"] = (
                    "Microsoft Graph does not take HTTP credentials; choose an app registration."
                )
            if not self.app_registration_id:
                errors["app_registration"] = "Microsoft Graph needs an app registration."
            if self.autodiscover:
                errors["autodiscover"] = "Autodiscover is for EWS only."
        elif self.type == self.Type.ICS:
            if self.app_registration_id:
                errors["app_registration"] = "An iCalendar source does not use OAuth."
            if self.autodiscover:
                errors["autodiscover"] = "Autodiscover is for EWS only."
        if self.service_account_id and self.app_registration_id:
            errors["app_registration"] = (
                "Choose a service account or an app registration, not both."
            )
        if errors:
            raise ValidationError(errors)

    def save(self, *args: object, **kwargs: object) -> None:
        if self.type == self.Type.GRAPH and not self.base_uri:
            self.base_uri = GRAPH_DEFAULT_BASE_URI
        super().save(*args, **kwargs)  # type: ignore[arg-type]


def _base_uri_problem(value: str, *, folder_allowed: bool) -> str:
    """What is wrong with a base URI beyond its form: user info, spaces ("" when nothing).

    A password in the URL would sit unencrypted in the database, the exports and
    every log line naming the URL; the service account keeps it encrypted. A
    folder of iCalendar files (no scheme) may have spaces in its name.
    """
    parts = split_url(value.strip())
    if parts is None:
        return "Give a URL such as https://mail.example.com."
    scheme = parts.scheme.lower()
    is_folder = folder_allowed and scheme not in ("http", "https", "file")
    if not is_folder and any(char.isspace() for char in value):
        return "A base URI may not contain spaces; write a space in a path as %20."
    if scheme in ("http", "https") and "@" in parts.netloc:
        return (
            "A base URI may not carry a user name or password (user:password@host): "
            "give them as the server's service account, which keeps the password encrypted."
        )
    return ""
