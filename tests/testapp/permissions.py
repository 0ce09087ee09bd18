"""A tiny object-permission backend, standing in for django-guardian or django-rules.

Like those backends it is a plain class with a sync ``has_perm(user, perm, obj)`` and no
``ahas_perm``: Django's async ``user.ahas_perm()`` skips such backends, so the store must
ask ``user.has_perm()``.
"""

from __future__ import annotations

from typing import Any

# {(user pk, "app_label.codename", object pk)}; tests add and remove grants.
GRANTS: set[tuple[Any, str, Any]] = set()


def grant(user: Any, perm: str, obj: Any) -> None:
    GRANTS.add((user.pk, perm, obj.pk))


class ObjectPermissionBackend:
    """Grants a permission on one object to one user; nothing at the model level."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None

    def has_perm(self, user_obj: Any, perm: str, obj: Any = None) -> bool:
        if obj is None or not user_obj.is_active:
            return False
        return (user_obj.pk, perm, obj.pk) in GRANTS
