"""DRF permission classes for the upload and content views.

The rule is the store's (``DjangoStore.has_access``): the owner may do everything; anyone
else needs ``chatkit_django.<action>_attachment`` as a model permission or, through an
object-level backend (django-guardian, django-rules), on the row itself. The views turn an
object-level refusal into 404, so another user's attachment looks like a missing one.
"""

from __future__ import annotations

from typing import Any

from django.core import signing
from django.db import models
from rest_framework.permissions import SAFE_METHODS, BasePermission

from chatkit_django.conf import chatkit_settings

PREVIEW_SALT = "chatkit_django.attachment-preview"

METHOD_ACTIONS = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "change",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


def user_has_access(user: Any, obj: models.Model, action: str) -> bool:
    """Whether ``user`` may ``action`` ("view", "change", "delete") ``obj`` (sync)."""
    if user is None or not user.is_authenticated:
        return False
    if obj.owner_id == user.pk:
        return True
    opts = obj._meta
    perm = f"{opts.app_label}.{action}_{opts.model_name}"
    return user.has_perm(perm) or user.has_perm(perm, obj)


class IsAuthenticatedUploader(BasePermission):
    """Uploads need an authenticated user: every attachment has an owner."""

    message = "Sign in to upload files."

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)


class HasAttachmentAccess(BasePermission):
    """The owner, or a user with the matching ``chatkit_django.*_attachment`` permission."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        action = METHOD_ACTIONS.get(request.method, "change")
        return user_has_access(request.user, obj, action)


def sign_preview(attachment_id: str) -> str:
    """A token granting read access to one attachment for ``PREVIEW_URL_MAX_AGE`` seconds."""
    return signing.dumps(attachment_id, salt=PREVIEW_SALT)


def preview_signature_valid(token: str | None, attachment_id: str) -> bool:
    if not token:
        return False
    try:
        value = signing.loads(
            token, salt=PREVIEW_SALT, max_age=chatkit_settings.PREVIEW_URL_MAX_AGE
        )
    except signing.BadSignature:  # SignatureExpired is a BadSignature
        return False
    return value == attachment_id


class HasPreviewSignature(BasePermission):
    """Read access through the short-lived signed link put in ``preview_url``.

    ``<img src>`` cannot send a bearer token, so image previews carry their own
    short-lived grant. It allows reading one attachment, nothing else.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        return request.method in SAFE_METHODS and preview_signature_valid(
            request.query_params.get("sig"), view.kwargs.get("attachment_id", "")
        )

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        return obj.pk == view.kwargs.get("attachment_id")
