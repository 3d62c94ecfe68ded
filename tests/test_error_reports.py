"""Error mails and DEBUG pages leave feed keys and sign-in codes out."""

from __future__ import annotations

import sys

from django.test import RequestFactory
from django.views.debug import get_exception_reporter_class

# Built from parts: the report shows this file's source lines around each frame.
FEED_KEY = "fake-feed-key-" + "0123456789"
SIGN_IN_CODE = "fake-auth-code-" + "abcdef"
STATE = "fake-state-" + "42"


def _report(path: str) -> tuple[str, str]:
    request = RequestFactory().get(path, HTTP_HOST="localhost")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = get_exception_reporter_class(request)(request, *sys.exc_info())
    return reporter.get_traceback_text(), reporter.get_traceback_html()


def test_error_report_hides_the_feed_key_of_the_url() -> None:
    text, html = _report(f"/ical/lobby.ics?key={FEED_KEY}&x=1")
    for report in (text, html):
        assert FEED_KEY not in report
        assert "lobby.ics" in report
    assert "x" in text


def test_error_report_hides_sign_in_codes_and_state() -> None:
    text, html = _report(f"/accounts/sign-in/done/?code={SIGN_IN_CODE}&state={STATE}")
    for report in (text, html):
        assert SIGN_IN_CODE not in report
        assert STATE not in report
