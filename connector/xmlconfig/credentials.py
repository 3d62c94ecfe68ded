"""Which credential each server of an imported configuration.xml uses.

The file names no credentials: a server carries its username and password
(HTTP authentication) or its tenant, client id and secret (OAuth). The
matcher decides, server by server, whether that is an existing
``ServiceAccount`` / ``AppRegistration`` reused as it is, one reused with a
new password, secret or secret expiry, or a new one named after the server:

- found by content: the same username; the same flow, tenant, client id,
  authority and account. The credential a restored revision names for the
  server comes first, then the one already linked to the server, then the one
  named like the server, then the oldest;
- a password or secret the file gives is looked for among those stored (and
  among the new credentials of the same file) before anything changes;
- a password or secret left out of the file (an export without secrets)
  keeps the stored one; without a stored one the plan warns that it must be
  entered in the admin. An empty <password/> is a password: none (an export
  with secrets writes it so for an account without one);
- servers that give a password or secret are matched first (``match_order``):
  one that gives none then shares what another server of the file gives for
  the same account, whatever the order of the servers in the file (an export
  writes them in id order; the order must not change what an import makes);
- a different password or secret updates the credential only when no other
  server uses it; otherwise a new credential is made, so that the other
  servers keep theirs;
- two servers of the file with the same credential share one choice, even a
  new one; a new delegated app registration comes with the warning that its
  account must sign in once.

Nothing is written here: ``plan.make_plan`` records the choices in the plan
and ``plan.apply_plan`` saves them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accounts.models import AppRegistration, ServiceAccount
from connector.models import Server
from connector.xmlconfig.reader import HttpAuth, OAuth, ServerSpec


@dataclass
class CredentialChoice:
    """The credential a server of the file will use: reused, updated or created."""

    model: type[ServiceAccount] | type[AppRegistration]
    existing: ServiceAccount | AppRegistration | None
    name: str
    values: dict[str, Any]  # fields to write (all of them for a new credential)
    changed: list[str] = field(default_factory=list)
    saved: ServiceAccount | AppRegistration | None = None

    @property
    def identity(self) -> tuple[str, Any]:
        if self.existing is not None:
            return (self.model.__name__, self.existing.pk)
        return (self.model.__name__, f"new:{self.name}")


def match_order(specs: list[ServerSpec]) -> list[ServerSpec]:
    """The servers in the order to match their credentials: those giving a secret first."""

    def gives_none(spec: ServerSpec) -> bool:
        if isinstance(spec.auth, HttpAuth):
            return spec.auth.password is None
        if isinstance(spec.auth, OAuth):
            return spec.auth.client_secret is None
        return False

    return sorted(specs, key=gives_none)  # stable: the file's order within each group


class CredentialMatcher:
    """Finds or makes the credential of each server, reusing by content."""

    def __init__(self, warnings: list[str], refs: dict[str, tuple[str, int]] | None = None) -> None:
        self.warnings = warnings  # the plan's: what an administrator must still do
        # A revision's references (server id → (model name, pk)): the credential each
        # server used then comes first among those that match by content.
        self.refs = refs or {}
        self.accounts = list(ServiceAccount.objects.prefetch_related("servers"))
        self.apps = list(AppRegistration.objects.prefetch_related("servers"))
        self.new: list[CredentialChoice] = []
        self.touched: dict[tuple[str, Any], CredentialChoice] = {}

    def _free_name(self, model: type[ServiceAccount] | type[AppRegistration], base: str) -> str:
        # Credential names allow fewer characters than ids ('~' is not one of them).
        base = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "._-") else "-" for ch in base)
        if not base[:1].isalnum():
            base = f"x{base}"
        taken = {obj.name for obj in (self.accounts if model is ServiceAccount else self.apps)}
        taken |= {choice.name for choice in self.new if choice.model is model}
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}-{number}"
        return name

    def _ordered(self, candidates: list[Any], server: Server | None, server_id: str) -> list[Any]:
        ref = self.refs.get(server_id)

        def rank(obj: Any) -> tuple[int, int, int, int]:
            referenced = ref is not None and (type(obj).__name__, obj.pk) == tuple(ref)
            linked = server is not None and any(s.pk == server.pk for s in obj.servers.all())
            return (
                0 if referenced else 1,
                0 if linked else 1,
                0 if obj.name == server_id else 1,
                obj.pk,
            )

        return sorted(candidates, key=rank)

    @staticmethod
    def _used_elsewhere(obj: Any, server: Server | None) -> bool:
        return any(server is None or s.pk != server.pk for s in obj.servers.all())

    def _reuse(self, choice: CredentialChoice) -> CredentialChoice:
        # Two servers of the file may reuse the same credential: one choice.
        key = choice.identity
        if key in self.touched:
            earlier = self.touched[key]
            earlier.values.update(choice.values)
            earlier.changed = sorted(set(earlier.changed) | set(choice.changed))
            return earlier
        self.touched[key] = choice
        return choice

    def for_server(self, spec: ServerSpec, server: Server | None) -> CredentialChoice | None:
        if isinstance(spec.auth, HttpAuth):
            return self.service_account(spec, spec.auth, server)
        if isinstance(spec.auth, OAuth):
            return self.app_registration(spec, spec.auth, server)
        return None

    def service_account(
        self, spec: ServerSpec, auth: HttpAuth, server: Server | None
    ) -> CredentialChoice:
        candidates = self._ordered(
            [a for a in self.accounts if a.username == auth.username], server, spec.server_id
        )
        new = [
            c
            for c in self.new
            if c.model is ServiceAccount and c.values["username"] == auth.username
        ]
        if auth.password is None:
            if candidates:
                return self._reuse(
                    CredentialChoice(ServiceAccount, candidates[0], candidates[0].name, {})
                )
            if new:
                return new[0]
            self.warnings.append(
                f"server {spec.server_id}: the file gives no password for {auth.username}; "
                "enter it in the admin (Service accounts) before the calendars can refresh"
            )
        else:
            for account in candidates:
                if account.password == auth.password:
                    return self._reuse(CredentialChoice(ServiceAccount, account, account.name, {}))
            for choice in new:
                if choice.values["password"] == auth.password:
                    return choice
            if candidates and not self._used_elsewhere(candidates[0], server):
                account = candidates[0]
                return self._reuse(
                    CredentialChoice(
                        ServiceAccount,
                        account,
                        account.name,
                        {"password": auth.password},
                        ["password"],
                    )
                )
        if auth.password == "":
            self.warnings.append(
                f"server {spec.server_id}: the file gives an empty password for "
                f"{auth.username}; enter it in the admin (Service accounts) if Exchange needs one"
            )
        choice = CredentialChoice(
            ServiceAccount,
            None,
            self._free_name(ServiceAccount, spec.server_id),
            {"username": auth.username, "password": auth.password or ""},
        )
        self.new.append(choice)
        return choice

    def app_registration(
        self, spec: ServerSpec, auth: OAuth, server: Server | None
    ) -> CredentialChoice:
        def same_app(values: dict[str, Any]) -> bool:
            return (
                values["flow"] == auth.flow
                and values["tenant"] == auth.tenant
                and values["client_id"] == auth.client_id
                and values["authority"].rstrip("/") == auth.authority
                and values["account"] == auth.account
            )

        candidates = self._ordered(
            [
                app
                for app in self.apps
                if same_app(
                    {
                        "flow": app.flow,
                        "tenant": app.tenant,
                        "client_id": app.client_id,
                        "authority": app.authority,
                        "account": app.account,
                    }
                )
            ],
            server,
            spec.server_id,
        )
        new = [c for c in self.new if c.model is AppRegistration and same_app(c.values)]

        def expiry_update(app: AppRegistration) -> tuple[dict[str, Any], list[str]]:
            if auth.secret_element and app.secret_expires != auth.secret_expires:
                return {"secret_expires": auth.secret_expires}, ["secret expiry"]
            return {}, []

        if auth.client_secret is None:
            if candidates:
                values, changed = expiry_update(candidates[0])
                return self._reuse(
                    CredentialChoice(
                        AppRegistration, candidates[0], candidates[0].name, values, changed
                    )
                )
            if new:
                return new[0]
            if auth.flow == AppRegistration.Flow.CLIENT_CREDENTIALS:
                self.warnings.append(
                    f"server {spec.server_id}: the file gives no client secret; enter it in "
                    "the admin (OAuth app registrations) before the calendars can refresh"
                )
        else:
            for app in candidates:
                if app.client_secret == auth.client_secret:
                    values, changed = expiry_update(app)
                    return self._reuse(
                        CredentialChoice(AppRegistration, app, app.name, values, changed)
                    )
            for choice in new:
                if choice.values["client_secret"] == auth.client_secret:
                    return choice
            if candidates and not self._used_elsewhere(candidates[0], server):
                app = candidates[0]
                return self._reuse(
                    CredentialChoice(
                        AppRegistration,
                        app,
                        app.name,
                        {
                            "client_secret": auth.client_secret,
                            "secret_expires": auth.secret_expires,
                            # A new secret: what was learned about the old one is void.
                            "secret_expired_at": None,
                            "expiry_notified_days": None,
                        },
                        ["client secret"]
                        + (["secret expiry"] if app.secret_expires != auth.secret_expires else []),
                    )
                )
        choice = CredentialChoice(
            AppRegistration,
            None,
            self._free_name(AppRegistration, spec.server_id),
            {
                "flow": auth.flow,
                "tenant": auth.tenant,
                "client_id": auth.client_id,
                "client_secret": auth.client_secret or "",
                "secret_expires": auth.secret_expires,
                "authority": auth.authority,
                "account": auth.account,
            },
        )
        if auth.flow == AppRegistration.Flow.DELEGATED:
            self.warnings.append(
                f"server {spec.server_id}: {auth.account} must sign in once (delegated "
                "access) before the calendars can refresh"
            )
        self.new.append(choice)
        return choice
