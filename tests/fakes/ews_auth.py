"""HTTP authentication as IIS does it in front of Exchange: Basic, Digest, NTLM, Bearer.

Real challenge/response: Digest checks the MD5 response against nonces it
issued; NTLM runs Negotiate → Challenge → Authenticate on one TCP connection
and verifies the NTLMv2 proof against the configured password (so a wrong
password is refused), after which the connection stays authenticated, as with
IIS. Nothing here trusts what the client claims without checking it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from urllib.request import parse_http_list, parse_keqv_list

SCHEMES = ("basic", "digest", "ntlm", "negotiate", "kerberos")
REALM = "ews.contoso.com"


@dataclass
class FakeUser:
    username: str  # as the client sends it: delegate@contoso.com or CONTOSO\delegate
    password: str
    scheme: str  # basic | digest | ntlm | negotiate (NTLM inside Negotiate) | kerberos
    mailbox: str = ""  # SMTP address of the user's own mailbox

    @property
    def key(self) -> str:
        return self.username.lower()


@dataclass
class Outcome:
    """What the authentication step decided for one request."""

    user: FakeUser | None = None  # authenticated user
    bearer: bool = False  # authenticated with an OAuth token
    delegate: str = ""  # a delegated token: the signed-in account ("" for app-only)
    challenge: dict[str, str] = field(default_factory=dict)  # headers of a 401 answer
    reason: str = ""  # why it was refused, for the 401 body and tests

    @property
    def ok(self) -> bool:
        return self.user is not None or self.bearer


# -- MD4 (hashlib lacks it under OpenSSL 3), for the NT hash ----------------------


def md4(data: bytes) -> bytes:
    """RFC 1320 MD4."""

    def rol(value: int, shift: int) -> int:
        value &= 0xFFFFFFFF
        return ((value << shift) | (value >> (32 - shift))) & 0xFFFFFFFF

    message = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", len(data) * 8)
    a, b, c, d = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for offset in range(0, len(message), 64):
        x = struct.unpack("<16I", message[offset : offset + 64])
        aa, bb, cc, dd = a, b, c, d
        for i in (0, 4, 8, 12):
            a = rol(a + ((b & c) | (~b & d)) + x[i], 3)
            d = rol(d + ((a & b) | (~a & c)) + x[i + 1], 7)
            c = rol(c + ((d & a) | (~d & b)) + x[i + 2], 11)
            b = rol(b + ((c & d) | (~c & a)) + x[i + 3], 19)
        for i in (0, 1, 2, 3):
            a = rol(a + ((b & c) | (b & d) | (c & d)) + x[i] + 0x5A827999, 3)
            d = rol(d + ((a & b) | (a & c) | (b & c)) + x[i + 4] + 0x5A827999, 5)
            c = rol(c + ((d & a) | (d & b) | (a & b)) + x[i + 8] + 0x5A827999, 9)
            b = rol(b + ((c & d) | (c & a) | (d & a)) + x[i + 12] + 0x5A827999, 13)
        for i in (0, 2, 1, 3):
            a = rol(a + (b ^ c ^ d) + x[i] + 0x6ED9EBA1, 3)
            d = rol(d + (a ^ b ^ c) + x[i + 8] + 0x6ED9EBA1, 9)
            c = rol(c + (d ^ a ^ b) + x[i + 4] + 0x6ED9EBA1, 11)
            b = rol(b + (c ^ d ^ a) + x[i + 12] + 0x6ED9EBA1, 15)
        a, b, c, d = (
            (a + aa) & 0xFFFFFFFF,
            (b + bb) & 0xFFFFFFFF,
            (c + cc) & 0xFFFFFFFF,
            (d + dd) & 0xFFFFFFFF,
        )
    return struct.pack("<4I", a, b, c, d)


# -- NTLM messages (MS-NLMP) ---------------------------------------------------------

NTLM_SIGNATURE = b"NTLMSSP\x00"
FLAG_UNICODE = 0x00000001
FLAG_REQUEST_TARGET = 0x00000004
FLAG_NTLM = 0x00000200
FLAG_ALWAYS_SIGN = 0x00008000
FLAG_TARGET_TYPE_DOMAIN = 0x00010000
FLAG_EXTENDED_SESSION_SECURITY = 0x00080000
FLAG_TARGET_INFO = 0x00800000
FLAG_VERSION = 0x02000000
SERVER_FLAGS = (
    FLAG_UNICODE
    | FLAG_REQUEST_TARGET
    | FLAG_NTLM
    | FLAG_ALWAYS_SIGN
    | FLAG_TARGET_TYPE_DOMAIN
    | FLAG_EXTENDED_SESSION_SECURITY
    | FLAG_TARGET_INFO
    | FLAG_VERSION
)
# Windows Server 2019 (10.0.17763), NTLM revision 15.
SERVER_VERSION = struct.pack("<BBHBBBB", 10, 0, 17763, 0, 0, 0, 15)


def _av_pair(av_id: int, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def _filetime_now() -> bytes:
    return struct.pack("<Q", int((time.time() + 11644473600) * 10_000_000))


def ntlm_message_type(token: bytes) -> int:
    if len(token) < 12 or not token.startswith(NTLM_SIGNATURE):
        return 0
    return int(struct.unpack("<I", token[8:12])[0])


def build_challenge(client_flags: int, server_challenge: bytes) -> bytes:
    """The CHALLENGE_MESSAGE of a Windows server in domain CONTOSO."""
    target_name = "CONTOSO".encode("utf-16-le")
    target_info = b"".join(
        [
            _av_pair(2, "CONTOSO".encode("utf-16-le")),
            _av_pair(1, "EXCH01".encode("utf-16-le")),
            _av_pair(4, "contoso.com".encode("utf-16-le")),
            _av_pair(3, "exch01.contoso.com".encode("utf-16-le")),
            _av_pair(7, _filetime_now()),
            _av_pair(0, b""),
        ]
    )
    flags = SERVER_FLAGS | (client_flags & 0xE0000030)  # keep 56/128/key exchange/sign/seal
    header_size = 56
    return b"".join(
        [
            NTLM_SIGNATURE,
            struct.pack("<I", 2),
            struct.pack("<HHI", len(target_name), len(target_name), header_size),
            struct.pack("<I", flags),
            server_challenge,
            b"\x00" * 8,
            struct.pack("<HHI", len(target_info), len(target_info), header_size + len(target_name)),
            SERVER_VERSION,
            target_name,
            target_info,
        ]
    )


@dataclass
class Authenticate:
    domain: str
    user: str
    nt_response: bytes


def parse_authenticate(token: bytes) -> Authenticate:
    def field_at(offset: int) -> bytes:
        length, _max, start = struct.unpack("<HHI", token[offset : offset + 8])
        return token[start : start + length]

    flags = struct.unpack("<I", token[60:64])[0]
    encoding = "utf-16-le" if flags & FLAG_UNICODE else "latin-1"
    return Authenticate(
        domain=field_at(28).decode(encoding),
        user=field_at(36).decode(encoding),
        nt_response=field_at(20),
    )


def ntlmv2_valid(message: Authenticate, password: str, server_challenge: bytes) -> bool:
    """Recompute the NTProofStr (MS-NLMP 3.3.2) from the password and compare."""
    if len(message.nt_response) <= 24:  # NTLMv1 or anonymous: refused, as by modern Windows
        return False
    nt_hash = md4(password.encode("utf-16-le"))
    response_key = hmac.new(
        nt_hash, (message.user.upper() + message.domain).encode("utf-16-le"), hashlib.md5
    ).digest()
    proof, blob = message.nt_response[:16], message.nt_response[16:]
    expected = hmac.new(response_key, server_challenge + blob, hashlib.md5).digest()
    return hmac.compare_digest(proof, expected)


# -- the authenticator ---------------------------------------------------------------


class Authenticator:
    """Decides, request by request, who is calling. Thread-safe."""

    def __init__(self) -> None:
        self.users: dict[str, FakeUser] = {}
        self.negotiate_only = False  # advertise only "Negotiate", as an IIS without NTLM provider
        self.token_validator: object = None  # Callable[[str], bool] set by the identity fixture
        # Kerberos: the keytab of the service principal HTTP/<host> (tests/fixtures/kerberos.py);
        # users of scheme "kerberos" are found by their principal (user@REALM).
        self.keytab = ""
        # Callable[[str], tuple[str, frozenset[str]]]: a valid token's signed-in account
        # ("" for an app-only token) and its delegated permissions (scp).
        self.token_owner: object = None
        self._lock = threading.Lock()
        self._connections: dict[int, FakeUser] = {}  # NTLM: authenticated connections
        self._pending: dict[int, bytes] = {}  # NTLM: server challenge per connection
        self._nonces: dict[str, float] = {}  # Digest: nonces issued

    def add_user(self, user: FakeUser) -> None:
        if user.scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {user.scheme!r}")
        with self._lock:
            self.users[user.key] = user

    def forget_connections(self) -> None:
        with self._lock:
            self._connections.clear()
            self._pending.clear()

    def _find(self, username: str, domain: str = "") -> FakeUser | None:
        candidates = [username.lower()]
        if domain:
            candidates.insert(0, f"{domain}\\{username}".lower())
        for candidate in candidates:
            if candidate in self.users:
                return self.users[candidate]
        return None

    def challenge_headers(self) -> dict[str, str]:
        """The WWW-Authenticate header of a 401, listing what the server accepts."""
        schemes = {user.scheme for user in self.users.values()}
        offers: list[str] = []
        if schemes & {"ntlm", "negotiate", "kerberos"}:
            offers.append("Negotiate")
            if not self.negotiate_only and schemes & {"ntlm", "negotiate"}:
                offers.append("NTLM")
        if "digest" in schemes:
            nonce = os.urandom(16).hex()
            with self._lock:
                self._nonces[nonce] = time.monotonic()
            offers.append(
                f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5, '
                f'opaque="{hashlib.md5(REALM.encode()).hexdigest()}"'
            )
        if "basic" in schemes:
            offers.append(f'Basic realm="{REALM}"')
        if self.token_validator is not None:
            offers.append(
                'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
                'token_types="app_asserted_user_v1 service_asserted_app_v1"'
            )
        return {"WWW-Authenticate": ", ".join(offers)} if offers else {}

    def authenticate(self, method: str, authorization: str, connection_id: int) -> Outcome:
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        if not authorization:
            with self._lock:
                user = self._connections.get(connection_id)
            if user is not None:
                return Outcome(user=user)
            return Outcome(challenge=self.challenge_headers(), reason="no credentials")
        if scheme == "basic":
            return self._basic(credentials.strip())
        if scheme == "digest":
            return self._digest(method, credentials)
        if scheme in ("ntlm", "negotiate"):
            return self._ntlm(scheme, credentials.strip(), connection_id)
        if scheme == "bearer":
            return self._bearer(credentials.strip())
        return Outcome(challenge=self.challenge_headers(), reason=f"unsupported scheme {scheme}")

    def _refused(self, reason: str) -> Outcome:
        return Outcome(challenge=self.challenge_headers(), reason=reason)

    def _basic(self, credentials: str) -> Outcome:
        try:
            username, _, password = base64.b64decode(credentials).decode("utf-8").partition(":")
        except ValueError:
            return self._refused("malformed basic credentials")
        user = self._find(username)
        if user is None or user.scheme != "basic":
            return self._refused("unknown user")
        if not hmac.compare_digest(user.password.encode(), password.encode()):
            return self._refused("wrong password")
        return Outcome(user=user)

    def _digest(self, method: str, credentials: str) -> Outcome:
        params = parse_keqv_list(parse_http_list(credentials))
        with self._lock:
            issued = params.get("nonce", "") in self._nonces
        if not issued:
            return self._refused("unknown nonce")
        user = self._find(params.get("username", ""))
        if user is None or user.scheme != "digest":
            return self._refused("unknown user")

        def md5(text: str) -> str:
            return hashlib.md5(text.encode("utf-8")).hexdigest()

        ha1 = md5(f"{user.username}:{REALM}:{user.password}")
        ha2 = md5(f"{method}:{params.get('uri', '')}")
        if params.get("qop") == "auth":
            nc, cnonce = params.get("nc", ""), params.get("cnonce", "")
            expected = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        else:
            expected = md5(f"{ha1}:{params['nonce']}:{ha2}")
        if not hmac.compare_digest(expected, params.get("response", "")):
            return self._refused("wrong password")
        return Outcome(user=user)

    def _ntlm(self, scheme: str, credentials: str, connection_id: int) -> Outcome:
        if scheme == "ntlm" and self.negotiate_only:
            return self._refused("NTLM is not offered")
        try:
            token = base64.b64decode(credentials)
        except ValueError:
            return self._refused("malformed token")
        kind = ntlm_message_type(token)
        if kind == 1:
            client_flags = struct.unpack("<I", token[12:16])[0]
            server_challenge = os.urandom(8)
            with self._lock:
                self._pending[connection_id] = server_challenge
                self._connections.pop(connection_id, None)
            reply = build_challenge(client_flags, server_challenge)
            header = "Negotiate" if scheme == "negotiate" else "NTLM"
            return Outcome(
                challenge={"WWW-Authenticate": f"{header} {base64.b64encode(reply).decode()}"},
                reason="challenge sent",
            )
        if kind == 3:
            with self._lock:
                server_challenge = self._pending.pop(connection_id, b"")
            if not server_challenge:
                return self._refused("authenticate without challenge on this connection")
            message = parse_authenticate(token)
            user = self._find(message.user, message.domain)
            if user is None or user.scheme not in ("ntlm", "negotiate"):
                return self._refused("unknown user")
            if not ntlmv2_valid(message, user.password, server_challenge):
                return self._refused("wrong password")
            with self._lock:
                self._connections[connection_id] = user
            return Outcome(user=user)
        if scheme == "negotiate" and self.keytab:
            return self._kerberos(token, connection_id)
        # A Kerberos (SPNEGO) token: this fake has no KDC, as a server whose SPN is missing.
        return self._refused("Kerberos is not available")

    def _kerberos(self, token: bytes, connection_id: int) -> Outcome:
        """Accept a SPNEGO/Kerberos token with the service keytab, as IIS with Kerberos does.

        A refused ticket (clock skew, a ticket for another service, a tampered token) is
        answered 401 with the acceptor's Kerberos error token in ``WWW-Authenticate:
        Negotiate``, as Windows does (RFC 4559 section 5; RFC 4121 section 4.1: the
        acceptor returns a KRB-ERROR to the initiator), so the client learns why.
        Like IIS with authPersistNonNTLM (its default), the connection then stays
        authenticated.
        """
        import gssapi

        server = gssapi.Credentials(usage="accept", store={"keytab": self.keytab})
        context = gssapi.SecurityContext(creds=server, usage="accept")
        reply = b""
        try:
            # python-gssapi returns the error token of a failed step and raises the error
            # at the next use of the context.
            reply = context.step(token) or b""
            complete = context.complete
        except gssapi.exceptions.GSSError as exc:
            error_token = reply or getattr(exc, "token", None) or b""
            offer = "Negotiate"
            if error_token:
                offer += f" {base64.b64encode(error_token).decode()}"
            headers = {"WWW-Authenticate": offer}
            return Outcome(challenge=headers, reason=f"Kerberos refused: {exc.gen_message()}")
        if not complete:
            challenge = {"WWW-Authenticate": f"Negotiate {base64.b64encode(reply).decode()}"}
            return Outcome(challenge=challenge, reason="Kerberos continues")
        user = self._find(str(context.initiator_name))
        if user is None or user.scheme != "kerberos":
            return self._refused(f"no mailbox user for {context.initiator_name}")
        with self._lock:
            self._connections[connection_id] = user
        return Outcome(user=user)

    def _bearer(self, token: str) -> Outcome:
        validator = self.token_validator
        if validator is not None and callable(validator) and validator(token):
            owner = self.token_owner
            account, scopes = owner(token) if callable(owner) else ("", frozenset())
            if account and "EWS.AccessAsUser.All" not in scopes:
                # Exchange Online reads a delegated token's scp claim: without EWS's delegated
                # permission the token grants nothing.
                return Outcome(
                    challenge={
                        "WWW-Authenticate": 'Bearer client_id="00000002-0000-0ff1-ce00-'
                        '000000000000", error="invalid_token"',
                        "x-ms-diagnostics": '2000008;reason="The token contains no '
                        'permissions, or permissions can not be understood.";'
                        'error_category="invalid_grant"',
                    },
                    reason="no EWS permission in the token",
                )
            return Outcome(bearer=True, delegate=account.lower())
        return Outcome(
            challenge={
                "WWW-Authenticate": 'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", '
                'error="invalid_token"',
                "x-ms-diagnostics": '2000001;reason="The token is invalid or expired.";'
                'error_category="invalid_token"',
            },
            reason="invalid token",
        )
