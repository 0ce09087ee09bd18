"""Store and attachment-store overrides for the access and per-user storage tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.files.storage import Storage, storages
from django.http import HttpRequest

from chatkit_django.attachments import DjangoAttachmentStore
from chatkit_django.store import DjangoStore


class DenyAllStore(DjangoStore):
    """An access rule that lets no one do anything, whatever Django permissions say."""

    async def has_access(self, user: Any, obj: Any, action: str) -> bool:
        return False


# --8<-- [start:team-rule]
#: {user pk: team name}; the tests fill it.
TEAMS: dict[Any, str] = {}


class TeamStore(DjangoStore):
    """Members of one team may view, change and delete each other's threads and files."""

    async def has_access(self, user: Any, obj: Any, action: str) -> bool:
        if obj.owner_id == user.pk:
            return True
        team = TEAMS.get(user.pk)
        return team is not None and TEAMS.get(obj.owner_id) == team


# --8<-- [end:team-rule]


# --8<-- [start:per-user-storage]
#: {user pk: STORAGES alias}; the tests fill it.
STORAGE_OF_USER: dict[Any, str] = {}


class PerUserAttachmentStore(DjangoAttachmentStore):
    """Each user's bytes on the storage named for them (a tenant's bucket, say)."""

    def get_storage(self, owner_id: Any = None) -> Storage:
        alias = STORAGE_OF_USER.get(owner_id)
        return storages[alias] if alias else super().get_storage(owner_id)


# --8<-- [end:per-user-storage]


@dataclass
class Account:
    user: Any


@dataclass
class AccountContext:
    """A context of a project's own, not a ``ChatKitContext``: user and request elsewhere."""

    account: Account
    http: HttpRequest


class AccountStore(DjangoStore):
    def get_user(self, context: Any) -> Any:
        return context.account.user

    def get_request(self, context: Any) -> HttpRequest | None:
        return context.http


def account_context(request: HttpRequest) -> AccountContext:
    """``CHATKIT['CONTEXT_FACTORY']`` for ``AccountStore``."""
    return AccountContext(account=Account(user=request.user), http=request)
