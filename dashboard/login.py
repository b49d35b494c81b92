"""Log-in with a lockout, for the dashboard (/accounts/login/) and the admin.

``LOGIN_FAILURES_LIMIT`` wrong passwords for one username, or ``LOGIN_FAILURES_PER_IP`` from one
client address, within ``LOGIN_LOCKOUT_SECONDS`` lock that username (or address) for
``LOGIN_LOCKOUT_SECONDS``. While locked, the form refuses before checking the password, the right
one included: a guesser learns nothing, and the page says when to try again (HTTP 429 with
Retry-After on the dashboard's form). A successful log-in clears the username's count. Usernames
that do not exist are counted the same, so the lockout does not tell which exist.
"""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.http import HttpRequest, HttpResponse

from config.ratelimit import FixedWindow, Lock, client_ip, hashed
from config.rates import Rate

LOCKED_MESSAGE = "Too many failed log-ins: log-in is locked for %(minutes)s more minute(s). Try again later."


class LoginLockout:
    """Failure counts and locks for one username and one client address."""

    def __init__(self, username: str, address: str) -> None:
        self.seconds = settings.LOGIN_LOCKOUT_SECONDS
        user, ip = f"login:user:{hashed(username)}", f"login:ip:{address}"
        # (counter, lock) pairs; a limit of 0 turns that one off, an empty username counts nothing.
        self.user = (
            (FixedWindow(user, Rate(settings.LOGIN_FAILURES_LIMIT, self.seconds)), Lock(user))
            if username and settings.LOGIN_FAILURES_LIMIT
            else None
        )
        self.ip = (
            (FixedWindow(ip, Rate(settings.LOGIN_FAILURES_PER_IP, self.seconds)), Lock(ip))
            if settings.LOGIN_FAILURES_PER_IP
            else None
        )

    def locked_for(self) -> int | None:
        """Seconds until the log-in may be tried again, or None when it may be tried now."""
        left = [lock.remaining() for _, lock in filter(None, (self.user, self.ip))]
        return max((seconds for seconds in left if seconds is not None), default=None)

    def record_failure(self) -> None:
        for failures, lock in filter(None, (self.user, self.ip)):
            if failures.hit() >= failures.rate.count:
                lock.engage(self.seconds)

    def record_success(self) -> None:
        if self.user is not None:
            self.user[0].reset()


class LockoutMixin:
    """For AuthenticationForm subclasses: refuse while locked, count wrong passwords."""

    request: HttpRequest | None
    cleaned_data: dict[str, Any]
    locked_for: int | None = None

    def clean(self) -> dict[str, Any]:
        if self.request is None:  # a form built without a request cannot be keyed: Django's views pass one
            return super().clean()  # type: ignore[misc]
        lockout = LoginLockout(self.cleaned_data.get("username") or "", client_ip(self.request))
        self.locked_for = lockout.locked_for()
        if self.locked_for is not None:
            raise forms.ValidationError(
                LOCKED_MESSAGE, code="locked", params={"minutes": math.ceil(self.locked_for / 60)}
            )
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except forms.ValidationError as exc:
            if exc.code == "invalid_login":
                lockout.record_failure()
            raise
        lockout.record_success()
        return cleaned


class LockoutAuthenticationForm(LockoutMixin, AuthenticationForm):
    pass


class AdminLockoutAuthenticationForm(LockoutMixin, AdminAuthenticationForm):
    pass


class LockoutLoginView(LoginView):
    form_class = LockoutAuthenticationForm

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if form.locked_for is not None:
            response.status_code = 429
            response["Retry-After"] = str(form.locked_for)
        return response
