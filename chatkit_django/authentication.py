"""Who is asking: the one place the app's views find a request's user.

The configured DRF authenticators (``CHATKIT['AUTHENTICATION_CLASSES']``) are tried first,
then Django's session, whose requests must carry the CSRF token. Without a user, and unless
``ALLOW_ANONYMOUS`` is on, the answer is 401 (an authenticator names a ``WWW-Authenticate``
scheme) or 403, as DRF answers.

The ChatKit endpoint, its Channels consumer and the entity views mix in
``AuthenticationMixin``; the upload views are DRF views, so DRF runs the same
``get_authenticators()`` there, followed by DRF's session authentication.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from importlib import import_module
from typing import TYPE_CHECKING, TypeVar

from asgiref.sync import sync_to_async
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.utils.functional import LazyObject

from chatkit_django._internal.compat import csrf_failure, lazy_value
from chatkit_django.conf import chatkit_settings
from chatkit_django.exceptions import error_response
from chatkit_django.reconnect import retry_on_dead_connection

if TYPE_CHECKING:
    from rest_framework.authentication import BaseAuthentication

    from chatkit_django.context import UserLike


T = TypeVar("T")


class AuthenticationError(Exception):
    """The request carries credentials that are wrong (401) or none at all."""

    def __init__(self, detail: str, code: str, www_authenticate: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.www_authenticate = www_authenticate


def get_authenticators() -> list[BaseAuthentication]:
    """Instances of ``CHATKIT['AUTHENTICATION_CLASSES']``, for every view of the app."""
    return [cls() for cls in chatkit_settings.AUTHENTICATION_CLASSES or ()]


def authentication_failed_response(error: AuthenticationError | PermissionDenied) -> JsonResponse:
    """The 401 or 403 for a request ``authenticate()`` refused, in the app's error shape."""
    if isinstance(error, PermissionDenied):
        return error_response(str(error), "permission_denied", 403)
    response = error_response(error.detail, error.code, 401 if error.www_authenticate else 403)
    if error.www_authenticate:
        response["WWW-Authenticate"] = error.www_authenticate
    return response


async def _return(value: T) -> T:
    return value


#: Django's ``get_user()``, retried once on a fresh connection when it meets a dead one.
get_user_retrying = retry_on_dead_connection(get_user)


@retry_on_dead_connection
def load_session_user(request: HttpRequest, session_key: str) -> UserLike:
    """The user of the session ``session_key``, read into a new ``request.session``.

    Usually a request's first query, so a connection that died with a database restart
    is met here: it is retried once on a fresh one (``retry_on_dead_connection``), with a
    new session. Should it fail, the endpoint's 503 does not keep the half-read session
    (``reconnect.forget_half_read_session``).
    """
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(session_key)
    return get_user(request)


def _session_key(request: HttpRequest) -> str | None:
    if not apps.is_installed("django.contrib.sessions"):
        return None
    return request.COOKIES.get(settings.SESSION_COOKIE_NAME) or None


def find_session_user(request: HttpRequest) -> UserLike | None:
    """The user of Django's session, or ``None``: ``SessionMiddleware``'s session when it ran,
    else the session named by the cookie, read here (sync: one thread hop for both queries).

    The endpoint, the entity views and the DRF upload views (``SessionAuthentication``) all
    find the session user here, so none of them needs ``AuthenticationMiddleware``.
    """
    if hasattr(request, "session"):
        return get_user_retrying(request)
    session_key = _session_key(request)
    if session_key is None:
        return None
    return load_session_user(request, session_key)


class AuthenticationMixin:
    """``authenticate(request)`` for native async views: sets ``request.user`` or refuses.

    Override ``get_authenticators`` or ``get_allow_anonymous`` to change the policy for one
    view; ``CHATKIT`` sets the default for all of them.
    """

    def get_allow_anonymous(self) -> bool:
        return chatkit_settings.ALLOW_ANONYMOUS

    def get_authenticators(self) -> list[BaseAuthentication]:
        """DRF authentication instances tried before the session (``AUTHENTICATION_CLASSES``)."""
        return get_authenticators()

    async def authenticate(self, request: HttpRequest) -> None:
        """Set ``request.user``: DRF authenticators first, then Django's session.

        Raises ``AuthenticationError`` for bad credentials, or for none when anonymous
        access is off, and ``PermissionDenied`` when a session request fails CSRF.
        """
        authenticators = self.get_authenticators()
        user: UserLike | None = None
        if authenticators:
            # DRF authenticators are synchronous (token lookups hit the database).
            user = await sync_to_async(retry_on_dead_connection(self._drf_authenticate))(
                request, authenticators
            )
        if user is None:
            user = await self.get_session_user(request)
            if user is not None and user.is_authenticated:
                self.enforce_csrf(request)
        if user is None:
            user = AnonymousUser()
        # django-stubs type request.user as the settings' AUTH_USER_MODEL when mypy runs
        # (the test project's auth.User); any user model's instance lands here.
        request.user = user  # type: ignore[assignment]  # see above
        request.auser = partial(_return, request.user)
        if not user.is_authenticated and not self.get_allow_anonymous():
            raise AuthenticationError(
                "Authentication credentials were not provided.",
                "not_authenticated",
                self._www_authenticate(request, authenticators),
            )

    async def check_authentication(self, request: HttpRequest) -> JsonResponse | None:
        """``authenticate()``; the 401/403 response if it refuses, ``None`` if the request may go on."""
        try:
            await self.authenticate(request)
        except (AuthenticationError, PermissionDenied) as e:
            return authentication_failed_response(e)
        return None

    def _drf_authenticate(
        self, request: HttpRequest, authenticators: Sequence[BaseAuthentication]
    ) -> UserLike | None:
        from rest_framework import exceptions
        from rest_framework.request import Request

        drf_request = Request(request, authenticators=authenticators)
        for authenticator in authenticators:
            try:
                result = authenticator.authenticate(drf_request)
            except exceptions.AuthenticationFailed as e:
                raise AuthenticationError(
                    str(e.detail),
                    "authentication_failed",
                    authenticator.authenticate_header(drf_request),
                ) from e
            except exceptions.PermissionDenied as e:  # DRF's SessionAuthentication CSRF failure
                raise PermissionDenied(str(e.detail)) from e
            if result is not None:
                request.auth = result[1]  # type: ignore[attr-defined]  # DRF's name, on Django's request
                user: UserLike = result[0]
                return user
        return None

    def _www_authenticate(
        self, request: HttpRequest, authenticators: Sequence[BaseAuthentication]
    ) -> str | None:
        """The first authenticator's ``WWW-Authenticate`` scheme, as DRF answers a 401."""
        if not authenticators:
            return None
        from rest_framework.request import Request

        drf_request = Request(request, authenticators=authenticators)
        return next((h for a in authenticators if (h := a.authenticate_header(drf_request))), None)

    async def get_session_user(self, request: HttpRequest) -> UserLike | None:
        """The user of Django's session, if any.

        The session is ``SessionMiddleware``'s when it runs; without it (a project that keeps
        sync middleware off the endpoint's path, see Deploy streaming) it is read from the
        cookie here. Session and user are loaded with the sync ``get_user()`` in one thread
        hop: ``request.auser()`` takes two, and each costs more than the queries.
        """
        user: UserLike | LazyObject[UserLike] | None = getattr(request, "user", None)
        if isinstance(user, LazyObject):  # AuthenticationMiddleware's, maybe not loaded yet
            loaded: UserLike | None = lazy_value(user)
            if loaded is not None:
                return loaded
        elif user is not None:  # set by Channels' AuthMiddlewareStack, or a test
            return user
        if not hasattr(request, "session") and not _session_key(request):
            return None  # no thread hop for a request without a session
        return await sync_to_async(find_session_user)(request)

    def enforce_csrf(self, request: HttpRequest) -> None:
        """Cookie-authenticated requests must carry the CSRF token (``X-CSRFToken``)."""
        reason = csrf_failure(request)
        if reason:
            raise PermissionDenied(f"CSRF Failed: {reason}")
