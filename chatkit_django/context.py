"""The per-request context handed to every SDK call."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from chatkit_django.conf import chatkit_settings

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from django.http import HttpRequest


@dataclass
class ChatKitContext:
    """Who is acting, and in which request.

    ``request`` is ``None`` outside a request (management commands, tasks). Projects put
    tenant, locale and the like in ``extra``, or subclass this and return the subclass from
    their view's ``get_context()``.
    """

    user: AbstractBaseUser | AnonymousUser
    request: HttpRequest | None = None
    extra: dict[str, Any] = field(default_factory=dict)


async def make_context(request: HttpRequest) -> Any:
    """The context for one request, the same for the endpoint and the attachment views.

    ``CHATKIT['CONTEXT_FACTORY']`` (sync or async) builds it when set; otherwise a
    ``ChatKitContext`` for ``request.user``.
    """
    factory = chatkit_settings.CONTEXT_FACTORY
    if factory is None:
        return ChatKitContext(user=request.user, request=request)
    if inspect.iscoroutinefunction(factory):
        return await factory(request)
    return await sync_to_async(factory)(request)
