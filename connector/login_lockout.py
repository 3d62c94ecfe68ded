"""The admin's sign-in lock-out: django-axes, configured in settings ("AXES_").

Too many wrong passwords for one username from one address (the client
address of connector.access, through TRUSTED_PROXIES) lock that pair for
LOGIN_LOCKOUT_MINUTES; the same administrator signs in from elsewhere, and
``manage.py axes_reset`` lifts every lock at once.
"""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginLockoutBackend(AxesStandaloneBackend):
    """django-axes' backend for sign-ins through a page; a check without a request passes on.

    axes refuses ``authenticate()`` without a request outright. Such a call is
    no sign-in through a page (the test client's ``login()``, a script checking a
    password) and has no address to count by: the next backend decides alone.
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
