"""Autodiscover v2 (the JSON endpoint Exchange 2016+ and Exchange Online serve).

``GET /autodiscover/autodiscover.json/v1.0/<mailbox>?Protocol=EWS`` answers
``{"Protocol": "EWS", "Url": "https://host/EWS/Exchange.asmx"}``, anonymously,
as Exchange does. The fake Exchange serves it on its own host; FakeAutodiscover
serves it alone, for tests where autodiscover lives on another host.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import unquote

from tests.fakes.base import FakeHTTPServer, Request, Response

PATH_PREFIX = "/autodiscover/autodiscover.json"
PROTOCOLS = ("Rest", "AutodiscoverV1", "Ews", "ActiveSync")


def is_autodiscover(request: Request) -> bool:
    return request.method == "GET" and request.path.lower().startswith(PATH_PREFIX)


def requested_mailbox(request: Request) -> str:
    """The mailbox of /v1.0/<mailbox> or of ?Email=<mailbox>."""
    tail = request.path[len(PATH_PREFIX) :].strip("/")
    if tail.lower().startswith("v1.0/"):
        return unquote(tail[len("v1.0/") :])
    return request.arg("Email")


def autodiscover_answer(request: Request, ews_url: str) -> Response:
    protocol = request.arg("Protocol")
    if protocol.lower() != "ews":
        body = {
            "ErrorCode": "InvalidProtocol",
            "ErrorMessage": f"The given protocol value '{protocol}' is invalid. "
            f"Supported values are '{','.join(PROTOCOLS)}'",
        }
        return Response(status=400, body=json.dumps(body), content_type="application/json")
    if "@" not in requested_mailbox(request):
        body = {"ErrorCode": "InvalidUser", "ErrorMessage": "The given user is invalid."}
        return Response(status=400, body=json.dumps(body), content_type="application/json")
    return Response(
        body=json.dumps({"Protocol": "EWS", "Url": ews_url}),
        content_type="application/json; charset=utf-8",
    )


class FakeAutodiscover(FakeHTTPServer):
    """An autodiscover host on its own; ``ews_url`` is what it answers."""

    def __init__(self, ews_url: str = "", *, tls: bool = True) -> None:
        super().__init__(tls=tls)
        self.ews_url = ews_url
        self._lock = threading.Lock()

    def lookups(self) -> int:
        return self.count(is_autodiscover)

    def handle(self, request: Request) -> Response:
        if is_autodiscover(request):
            with self._lock:
                url = self.ews_url
            return autodiscover_answer(request, url)
        return Response(status=404, body="Not Found")
