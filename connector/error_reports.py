"""Error reports (mail to ADMINS, DEBUG pages) that never carry a feed key or secret.

Django's own filter hides settings and POST fields named like secrets, but
shows the query string as is: a feed URL's ``?key=`` and the identity
platform's ``?code=`` would reach the mail to ADMINS.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SENSITIVE_QUERY_PARAMETERS = {"key", "code", "state", "token", "access_token", "password"}
_QUERY_VALUE = re.compile(
    r"(?P<name>(?:^|[?&;])(?:" + "|".join(sorted(SENSITIVE_QUERY_PARAMETERS)) + r")=)[^&;#]*",
    re.IGNORECASE,
)


def cleanse_url(url: str) -> str:
    """``/ical/x.ics?key=abc&x=1`` → ``/ical/x.ics?key=********************&x=1``."""
    return _QUERY_VALUE.sub(
        lambda match: match.group("name") + SafeExceptionReporterFilter.cleansed_substitute, url
    )


class SecretSafeReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|QUERY_STRING", flags=re.IGNORECASE
    )

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        """Frame variables as Django shows them, with URLs' keys cleansed.

        A request's repr and any string holding a URL carry the query string.
        """
        cleaned = []
        for name, value in super().get_traceback_frame_variables(request, tb_frame):
            if isinstance(value, HttpRequest):
                value = cleanse_url(repr(value))
            elif isinstance(value, str):
                value = cleanse_url(value)
            cleaned.append((name, value))
        return cleaned


class SecretSafeExceptionReporter(ExceptionReporter):
    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        if self.request is not None:
            data["request_GET_items"] = [
                (
                    name,
                    self.filter.cleansed_substitute
                    if name.lower() in SENSITIVE_QUERY_PARAMETERS
                    else value,
                )
                for name, value in self.request.GET.items()
            ]
            data["request_insecure_uri"] = cleanse_url(str(data.get("request_insecure_uri", "")))
        return data
