"""Finding the user a data-protection command is about."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser
from django.db.models import QuerySet

from chatkit_django.models import ThreadItem

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser


def add_user_argument(parser: CommandParser) -> None:
    parser.add_argument("user", help="username (USERNAME_FIELD) of the user, or pk with --pk")
    parser.add_argument("--pk", action="store_true", help="USER is a primary key")


def get_user(options: dict[str, Any]) -> AbstractBaseUser:
    User = get_user_model()
    lookup = {"pk": options["user"]} if options["pk"] else {User.USERNAME_FIELD: options["user"]}
    try:
        return User._default_manager.get(**lookup)
    except (User.DoesNotExist, ValueError):
        raise CommandError(f"No user with {lookup}.") from None


def messages_elsewhere(user: AbstractBaseUser) -> QuerySet[ThreadItem]:
    """The messages ``user`` sent in threads that someone else owns (``ThreadItem.author``)."""
    return ThreadItem.objects.filter(author_id=user.pk).exclude(thread__owner_id=user.pk)
