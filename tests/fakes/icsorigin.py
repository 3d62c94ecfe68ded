"""A tiny origin of iCalendar files (an Outlook "publish calendar" link, another feed).

Serves ``files`` by path with ``ETag`` and ``Last-Modified``, answers ``304``
to ``If-None-Match``/``If-Modified-Since`` when nothing changed, can ask
for HTTP Basic credentials, and redirects the paths of ``redirects``. Every
request is logged with its headers, so a test sees whether an Authorization
header reached it (``authorizations()``).
"""

from __future__ import annotations

import base64
import hashlib
import time
from email.utils import formatdate, parsedate_to_datetime

from tests.fakes.base import FakeHTTPServer, Request, Response


class FakeIcsOrigin(FakeHTTPServer):
    def __init__(self, *, tls: bool = True) -> None:
        super().__init__(tls=tls)
        self.files: dict[str, tuple[bytes, float]] = {}  # path -> (body, modified time)
        self.credentials: tuple[str, str] | None = None
        self.send_validators = True  # False: an origin without ETag/Last-Modified
        self.redirects: dict[str, tuple[int, str]] = {}  # path -> (status, Location)

    def put(self, path: str, body: str | bytes, *, modified: float | None = None) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.files["/" + path.lstrip("/")] = (
            data,
            modified if modified is not None else time.time(),
        )

    def etag(self, path: str) -> str:
        data, _ = self.files["/" + path.lstrip("/")]
        return '"' + hashlib.sha1(data).hexdigest()[:16] + '"'

    def gets(self, path: str) -> list[Request]:
        wanted = "/" + path.lstrip("/")
        return [r for r in list(self.requests) if r.path == wanted]

    def redirect(self, path: str, location: str, *, status: int = 302) -> None:
        self.redirects["/" + path.lstrip("/")] = (status, location)

    def authorizations(self) -> list[str]:
        """The Authorization header of every request received ("" when there was none)."""
        return [r.header("authorization") for r in list(self.requests)]

    def handle(self, request: Request) -> Response:
        if request.path in self.redirects:
            status, location = self.redirects[request.path]
            return Response(status, b"", headers={"Location": location})
        if self.credentials is not None:
            expected = base64.b64encode(":".join(self.credentials).encode()).decode()
            if request.header("authorization") != f"Basic {expected}":
                return Response(
                    401,
                    "Unauthorized",
                    headers={"WWW-Authenticate": 'Basic realm="calendars"'},
                )
        found = self.files.get(request.path)
        if found is None:
            return Response(404, "Not Found")
        data, modified = found
        headers = {}
        if self.send_validators:
            etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
            last_modified = formatdate(modified, usegmt=True)
            headers = {"ETag": etag, "Last-Modified": last_modified}
            if request.header("if-none-match"):
                if etag in [t.strip() for t in request.header("if-none-match").split(",")]:
                    return Response(304, b"", headers=headers)
            elif request.header("if-modified-since"):
                since = parsedate_to_datetime(request.header("if-modified-since")).timestamp()
                if int(modified) <= since:
                    return Response(304, b"", headers=headers)
        return Response(200, data, headers=headers, content_type="text/calendar; charset=utf-8")
