"""The one error type of the sources, with a plain-language hint."""

from __future__ import annotations

import re


class SourceError(Exception):
    """A failure to read calendar data, as an administrator should read it.

    ``code`` is a stable short name (``wrong-password``, ``AADSTS7000222``,
    ``ErrorAccessDenied``, ``timeout`` ...), ``message`` says what happened in
    plain words, ``hint`` says how to fix it, ``retryable`` whether trying again
    later can help, ``step`` which pipeline step failed (token, connect, fetch).

    ``upstream`` is the upstream's own word for it, as an administrator searches it
    and quotes it to Microsoft: ``HTTP 503``, an EWS ResponseCode
    (``ErrorServerBusy``), an AADSTS number, a Graph error code, or the name of the
    network exception (``ConnectionResetError``); ``back_off`` the seconds Exchange
    asked to wait (BackOffMilliseconds, Retry-After) when it said. Never carries a
    secret.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        hint: str = "",
        retryable: bool = False,
        step: str = "fetch",
        resource: str = "",
        upstream: str = "",
        back_off: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint
        self.retryable = retryable
        self.step = step
        self.resource = resource
        self.upstream = upstream or _upstream_of(code)
        self.back_off = back_off

    def __str__(self) -> str:
        return self.message

    def as_text(self) -> str:
        text = self.message
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text


_UPSTREAM_CODE = re.compile(r"AADSTS\d+|Error[A-Z]\w+|http-\d{3}")


def _upstream_of(code: str) -> str:
    """A code that is already the upstream's own (AADSTS…, an EWS ResponseCode, http-NNN)."""
    if not _UPSTREAM_CODE.fullmatch(code):
        return ""
    return f"HTTP {code[5:]}" if code.startswith("http-") else code
