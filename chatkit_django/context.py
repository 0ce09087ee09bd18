"""The per-request context handed to every SDK call."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from typing_extensions import TypeVar

from chatkit_django.conf import chatkit_settings

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser
    from django.http import HttpRequest

#: Who can be acting: an instance of the project's user model, or ``AnonymousUser`` (before
#: authentication, and where ``ALLOW_ANONYMOUS`` lets anonymous requests in).
UserLike: TypeAlias = "AbstractBaseUser | AnonymousUser"

#: The header ``{% chatkit_widget scope=... %}`` sends the scope in, on every request
#: ChatKit.js makes. Nothing reads it unless the project's ``CONTEXT_FACTORY`` does.
SCOPE_HEADER = "X-ChatKit-Scope"


@dataclass
class ChatKitContext:
    """Who is acting, and in which request.

    ``request`` is ``None`` outside a request (management commands, tasks). ``scope`` splits
    one user's history (a workspace, an agent, a tenant): the request sees and creates only
    threads of that scope; ``None`` is unscoped (see ``DjangoStore.get_scope``). Projects put
    locale and the like in ``extra``, or subclass this and return the subclass from their
    view's ``get_context()``.
    """

    user: UserLike
    request: HttpRequest | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None


#: The context type of ``DjangoStore``, ``DjangoAttachmentStore`` and ``DjangoChatKitServer``:
#: ``ChatKitContext`` unless a project names its own (``class MyStore(DjangoStore[MyContext])``),
#: whose overrides then see ``MyContext``. Not bound to ``ChatKitContext``: a context type that
#: is not one works too, with the store's ``get_user`` and ``get_request`` overridden.
TContext = TypeVar("TContext", default=ChatKitContext)


async def make_context(request: HttpRequest) -> ChatKitContext:
    """The context for one request, the same for the endpoint and the attachment views.

    ``CHATKIT['CONTEXT_FACTORY']`` (sync or async) builds it when set; otherwise a
    ``ChatKitContext`` for ``request.user``.
    """
    factory = chatkit_settings.CONTEXT_FACTORY
    if factory is None:
        return ChatKitContext(user=request.user, request=request)
    # A project's factory may return a context type of its own (with the store's
    # ``get_user``/``get_request`` overridden); it stands in for a ChatKitContext.
    context: ChatKitContext
    if inspect.iscoroutinefunction(factory):
        context = await factory(request)
    else:
        context = await sync_to_async(factory)(request)
    return context


async def make_user_context(user: AbstractBaseUser, scope: str | None = None) -> ChatKitContext:
    """The context for ``user`` outside any request (server code, commands, task workers).

    ``CHATKIT['CONTEXT_FACTORY']``, when set, is called as ``factory(None, user=user)``, so
    one factory builds the contexts of both; otherwise a ``ChatKitContext`` with no request.
    A factory that takes no ``user`` argument is a configuration error, named as such. With
    a ``scope`` (a workspace, an agent: ``ChatKitContext.scope``), the factory is called
    with ``scope=scope`` too, and must accept it.
    """
    factory = chatkit_settings.CONTEXT_FACTORY
    if factory is None:
        return ChatKitContext(user=user, request=None, scope=scope)
    kwargs: dict[str, Any] = {"user": user}
    if scope is not None:
        kwargs["scope"] = scope
    try:
        inspect.signature(factory).bind(None, **kwargs)
    except TypeError:
        name = f"{factory.__module__}.{factory.__qualname__}"
        raise ImproperlyConfigured(
            f"CHATKIT['CONTEXT_FACTORY'] {name} takes no "
            f"{' or '.join(repr(k) for k in kwargs)} argument, so it cannot build a context "
            "outside a request. Accept it, e.g. 'def factory(request, user=None, scope=None)', "
            "and use it when request is None (see docs/guides/server-started.md)."
        ) from None
    context: ChatKitContext  # as in make_context()
    if inspect.iscoroutinefunction(factory):
        context = await factory(None, **kwargs)
    else:
        context = await sync_to_async(factory)(None, **kwargs)
    return context
