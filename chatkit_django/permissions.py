"""DRF permission classes for the upload and content views, and the sync side of the access rule.

The rule is the store's (``DjangoStore.has_access``, async, overridable): the owner may do
everything; anyone else needs ``chatkit_django.<action>_attachment`` as a model permission
or, through an object-level backend (django-guardian, django-rules), on the row itself.
Sync code asks it through ``user_has_access``, the one adapter, never a copy of it. The
views turn an object-level refusal into 404, so another user's attachment looks like a
missing one.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

from chatkit_django.attachments import preview_signature_valid
from chatkit_django.instances import user_has_access

__all__ = [
    "HasAttachmentAccess",
    "HasPreviewSignature",
    "IsAuthenticatedUploader",
    "user_has_access",
]

METHOD_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "change",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


class IsAuthenticatedUploader(BasePermission):
    """Uploads need an authenticated user: every attachment has an owner."""

    message = "Sign in to upload files."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)


class HasAttachmentAccess(BasePermission):
    """Whoever the access rule lets ``view`` / ``change`` / ``delete`` the attachment."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        action = METHOD_ACTIONS.get(request.method, "change")
        return user_has_access(request.user, obj, action)


class HasPreviewSignature(BasePermission):
    """Read access through the short-lived signed link put in ``preview_url``.

    ``<img src>`` cannot send a bearer token, so image previews carry their own
    short-lived grant. It allows reading one attachment, nothing else, and is only ever
    signed for a caller the access rule lets view that attachment.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        return request.method in SAFE_METHODS and preview_signature_valid(
            request.query_params.get("sig"), view.kwargs.get("attachment_id", "")
        )

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        return bool(obj.pk == view.kwargs.get("attachment_id"))
