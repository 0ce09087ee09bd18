"""Type-checked by ``make lint`` (mypy strict), never imported by a test.

A project's own context type flows into the overrides of ``DjangoStore``,
``DjangoAttachmentStore`` and ``DjangoChatKitServer`` through their context type
parameter. Without it, these overrides (which take a ``TenantContext``) would be
incompatible with the base classes' ``ChatKitContext`` and mypy would fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import assert_type

from chatkit.types import ThreadMetadata, ThreadStreamEvent, UserMessageItem
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from chatkit_django.attachments import DjangoAttachmentStore
from chatkit_django.context import ChatKitContext, UserLike
from chatkit_django.server import DjangoChatKitServer
from chatkit_django.store import DjangoStore


@dataclass
class TenantContext(ChatKitContext):
    tenant: str = ""


class TenantStore(DjangoStore[TenantContext]):
    def get_request(self, context: TenantContext) -> HttpRequest | None:
        return context.request if context.tenant else None

    def get_scope(self, context: TenantContext) -> str | None:
        return context.tenant or None

    def generate_thread_id(self, context: TenantContext) -> str:
        assert_type(self.get_user(context), UserLike | None)
        return f"{context.tenant}_{super().generate_thread_id(context)}"


class TenantAttachmentStore(DjangoAttachmentStore[TenantContext]):
    def generate_attachment_id(self, mime_type: str, context: TenantContext) -> str:
        assert_type(self.get_user(context), AbstractBaseUser | None)
        return f"{context.tenant}_{super().generate_attachment_id(mime_type, context)}"


class TenantServer(DjangoChatKitServer[TenantContext]):
    def __init__(self) -> None:
        super().__init__(store=TenantStore(), attachment_store=TenantAttachmentStore())

    async def respond(
        self,
        thread: ThreadMetadata,
        input_user_message: UserMessageItem | None,
        context: TenantContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        assert_type(context.tenant, str)
        assert_type(self.get_thread_item_converter(context).context, TenantContext)
        events: list[ThreadStreamEvent] = []
        for event in events:
            yield event


@dataclass
class AccountContext:
    """Not a ``ChatKitContext``: the store's hooks find the user and the request."""

    member: AbstractBaseUser
    http: HttpRequest


class AccountStore(DjangoStore[AccountContext]):
    def get_user(self, context: AccountContext) -> UserLike | None:
        return context.member

    def get_request(self, context: AccountContext) -> HttpRequest | None:
        return context.http

    def get_scope(self, context: AccountContext) -> str | None:
        return None  # no workspaces: one history per user
