"""An HTTP/1.1 server on 127.0.0.1 for fakes: TLS, keep-alive, request log, faults.

NTLM authenticates a connection, not a request, so the server keeps
connections open (HTTP/1.1, Content-Length on every response) and gives each
request the id of the connection it came on. A stopped server resets the
connections still open, as a real one going down does, and can start again on
the same port (nothing listens in between: connections are refused).
``attempts()`` counts every request that reached the server, also those a
fault left unanswered (``faults.down``) or refused in the TLS handshake
(``faults.untrusted_certificate``).
"""

from __future__ import annotations

import itertools
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import trustme


class FakeCA:
    """A throwaway certificate authority, made once per process."""

    _instance: FakeCA | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost", "::1")
        self.dir = tempfile.mkdtemp(prefix="fake-ca-")
        self.bundle = os.path.join(self.dir, "ca.pem")
        self.ca.cert_pem.write_to_path(self.bundle)
        # Same names, another CA, never in the bundle: Faults.untrusted_certificate.
        self.untrusted_cert = trustme.CA().issue_cert("127.0.0.1", "localhost", "::1")

    @classmethod
    def get(cls) -> FakeCA:
        with cls._lock:
            if cls._instance is None:
                cls._instance = FakeCA()
            return cls._instance

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context

    def untrusted_context(self) -> ssl.SSLContext:
        """A certificate for the same names from another CA, which nobody trusts."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.untrusted_cert.configure_cert(context)
        return context

    def trust(self) -> None:
        """Make this process (exchangelib, msal, the sources) and the processes it starts
        trust this CA: EXCHANGE_CA_BUNDLE, the application's setting (connector/core/tls.py),
        here and in the environment that child processes inherit."""
        from django.conf import settings

        os.environ["EXCHANGE_CA_BUNDLE"] = self.bundle
        settings.EXCHANGE_CA_BUNDLE = self.bundle
        # For the tests' own requests to the fakes; the application ignores these.
        os.environ["REQUESTS_CA_BUNDLE"] = self.bundle
        os.environ["SSL_CERT_FILE"] = self.bundle


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # header names lower-cased
    body: bytes
    connection_id: int
    received: float = field(default_factory=time.monotonic)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def arg(self, name: str, default: str = "") -> str:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"

    def encoded(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


Handler = Callable[[Request], Response]


class Faults:
    """What a test asks the fake to do wrong. All fields may change between requests."""

    def __init__(self) -> None:
        self.latency = 0.0  # seconds added before every answer
        self.down = False  # close connections without an answer
        # TLS with a certificate of a CA the client does not trust: new connections fail
        # the handshake, the open ones are closed without an answer (the server changed).
        self.untrusted_certificate = False
        self._status_queue: list[int] = []
        self._lock = threading.Lock()

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        with self._lock:
            self._status_queue.extend([status] * count)

    def take_status(self) -> int | None:
        with self._lock:
            return self._status_queue.pop(0) if self._status_queue else None

    def reset(self) -> None:
        self.latency = 0.0
        self.down = False
        self.untrusted_certificate = False
        with self._lock:
            self._status_queue.clear()


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection_id = next(self.server.connection_ids)
        with self.server.open_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.open_lock:
            self.server.open_connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # quiet: tests read the request log instead

    def _serve(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={key.lower(): value for key, value in self.headers.items()},
            body=body,
            connection_id=self.connection_id,
        )
        if fake.faults.down or fake.faults.untrusted_certificate:
            fake.record_dropped()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        fake.record(request)
        status = fake.faults.take_status()
        if status is not None:
            response = Response(status=status, body=f"injected {status}")
        else:
            try:
                response = fake.handle(request)
            except Exception as exc:  # a bug in the fake: answer 500 and say so
                response = Response(status=500, body=f"fake server error: {exc!r}")
        payload = response.encoded()
        if fake.faults.latency:
            # The answer leaves ``latency`` after the request came, however long the fake
            # took to make it: the latency of an Exchange, not the fake's own cost on top.
            time.sleep(max(0.0, request.received + fake.faults.latency - time.monotonic()))
        self.send_response(response.status)
        headers = {"Content-Type": response.content_type, **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeHTTPServer
    connection_ids: itertools.count
    open_connections: set[socket.socket]
    open_lock: threading.Lock


class FakeHTTPServer:
    """Base of the fakes: subclasses implement handle(request) -> Response."""

    def __init__(self, *, tls: bool = True) -> None:
        self.tls = tls
        self.faults = Faults()
        self.requests: list[Request] = []
        self.dropped = 0  # requests read and left unanswered (faults.down, a certificate change)
        self.refused_handshakes = 0  # TLS handshakes with the untrusted certificate
        self._log_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------
    def start(self, port: int = 0) -> FakeHTTPServer:
        """Listen on ``port`` (any free one by default; the same again after stop())."""
        server = _Server(("127.0.0.1", port), _RequestHandler)
        server.fake = self
        server.connection_ids = itertools.count(1)
        server.open_connections = set()
        server.open_lock = threading.Lock()
        if self.tls:
            ca = FakeCA.get()
            ca.trust()
            context = ca.server_context()
            context.sni_callback = self._certificate
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        # A short poll interval: stop() waits for the loop, 0.5 s by default per fake.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and reset the connections still open."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._server.open_lock:
                still_open = list(self._server.open_connections)
            for connection in still_open:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # closed by its client meanwhile
            self._server = None

    def _certificate(self, connection: ssl.SSLObject, name: str | None, _: object) -> None:
        """Called in each TLS handshake (with or without SNI): the certificate to show."""
        if self.faults.untrusted_certificate:
            with self._log_lock:
                self.refused_handshakes += 1
            connection.context = FakeCA.get().untrusted_context()

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- request log ----------------------------------------------------------------
    def record(self, request: Request) -> None:
        with self._log_lock:
            self.requests.append(request)

    def record_dropped(self) -> None:
        with self._log_lock:
            self.dropped += 1

    def attempts(self) -> int:
        """Every request that reached the server: answered, dropped, or refused in TLS."""
        with self._log_lock:
            return len(self.requests) + self.dropped + self.refused_handshakes

    def count(self, predicate: Callable[[Request], bool] | None = None) -> int:
        with self._log_lock:
            return sum(1 for request in self.requests if predicate is None or predicate(request))

    def clear_log(self) -> None:
        with self._log_lock:
            self.requests.clear()
            self.dropped = 0
            self.refused_handshakes = 0

    def handle(self, request: Request) -> Response:
        raise NotImplementedError
