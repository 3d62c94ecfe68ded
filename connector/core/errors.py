"""The one error type of the sources, with a plain-language hint."""

from __future__ import annotations


class SourceError(Exception):
    """A failure to read calendar data, as an administrator should read it.

    ``code`` is a stable short name (``wrong-password``, ``AADSTS7000222``,
    ``ErrorAccessDenied``, ``timeout`` ...), ``message`` says what happened in
    plain words, ``hint`` says how to fix it, ``retryable`` whether trying again
    later can help, ``step`` which pipeline step failed (token, connect, fetch).
    Never carries a secret.
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
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint
        self.retryable = retryable
        self.step = step
        self.resource = resource

    def __str__(self) -> str:
        return self.message

    def as_text(self) -> str:
        text = self.message
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text
