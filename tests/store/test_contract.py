"""``DjangoStore`` against the Store contract, in two configurations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatkit_django.context import ChatKitContext
from chatkit_django.store import DjangoStore
from tests.store.contract import StoreContract


class TestDjangoStore(StoreContract):
    def make_store(self) -> DjangoStore:
        return DjangoStore()

    def context_for(self, user: Any) -> ChatKitContext:
        return ChatKitContext(user=user)


# --8<-- [start:custom-context]
@dataclass
class Membership:
    user: Any


@dataclass
class TenantContext:
    """A project's own context type, with the user one step away."""

    membership: Membership


class TenantStore(DjangoStore):
    def get_user(self, context: Any) -> Any:
        return context.membership.user


# --8<-- [end:custom-context]


class TestDjangoStoreWithCustomContext(StoreContract):
    """``get_user`` is the one place a project adapts the store to its own context."""

    def make_store(self) -> DjangoStore:
        return TenantStore()

    def context_for(self, user: Any) -> TenantContext:
        return TenantContext(membership=Membership(user=user))
