"""Errors, in the one JSON shape every view of the app answers with: DRF's
``{"detail": ..., "code": ...}``.

DRF views get it through ``exception_handler`` (set on our API views); the native async
endpoint builds the same body with ``error_response``.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def error_response(detail: str, code: str, status_code: int) -> JsonResponse:
    """A JSON error response for views that are not DRF views."""
    return JsonResponse({"detail": str(detail), "code": code}, status=status_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, with the error ``code`` beside ``detail``."""
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        codes = exc.get_codes()
        if isinstance(response.data, dict) and isinstance(codes, str):
            response.data = {"detail": response.data.get("detail", str(exc.detail)), "code": codes}
        elif isinstance(codes, dict | list):
            response.data = {"detail": exc.detail, "code": "invalid"}
    return response


class NotFound(APIException):
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = _("Not found.")
    default_code = "not_found"


class RequestTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is larger than CHATKIT['MAX_REQUEST_BYTES'].")
    default_code = "request_too_large"
