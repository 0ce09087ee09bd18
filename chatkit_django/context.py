"""The per-request context handed to every SDK call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
