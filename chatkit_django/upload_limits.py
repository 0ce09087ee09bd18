"""Upload size limits: ``CHATKIT['MAX_UPLOAD_BYTES']``, one number or one per MIME pattern.

The setting is either a number of bytes for every file, or a mapping from MIME patterns to
limits::

    "MAX_UPLOAD_BYTES": {
        "image/*": 10 * 1024 * 1024,
        "application/pdf": 25 * 1024 * 1024,
        "*": 5 * 1024 * 1024,
    }

Patterns are ``"type/subtype"``, ``"type/*"`` and ``"*"`` (or ``"*/*"``), matched without
regard to case; the most specific pattern that matches a file's type wins (``image/png``
before ``image/*`` before ``*``). A type no pattern matches gets the default limit,
``DEFAULT_MAX_UPLOAD_BYTES`` (20 MiB): ``chatkit_django.W040`` asks for a ``"*"`` entry so
the fallback is written down. ChatKit.js 1.7 takes the same mapping as
``composer.attachments.maxSize``; ``chatkit_js_max_size()`` gives it, with the fallback
spelt out, so the browser refuses exactly what the server would.

Every place that checks a size asks ``max_upload_bytes(mime_type)``: direct and two-phase
uploads, presigned confirmation, and every read of stored bytes.
"""

from __future__ import annotations

import re
from typing import Any

from chatkit_django import exceptions
from chatkit_django.conf import DEFAULTS, chatkit_settings

#: The limit for types no pattern of a mapping matches.
DEFAULT_MAX_UPLOAD_BYTES: int = DEFAULTS["MAX_UPLOAD_BYTES"]

#: Patterns that match every type. ChatKit.js spells its fallback ``"*"``.
FALLBACK_PATTERNS = ("*", "*/*")

# A type or subtype: an RFC 6838 restricted name, as _internal.files.MIME_RE.
_NAME = r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}"
PATTERN_RE = re.compile(rf"{_NAME}/(?:{_NAME}|\*)")


def normalize_pattern(pattern: str) -> str:
    """``"Image/*"`` -> ``"image/*"``; ``"*/*"`` -> ``"*"``."""
    pattern = pattern.strip().lower()
    return "*" if pattern in FALLBACK_PATTERNS else pattern


def is_valid_pattern(pattern: Any) -> bool:
    """Whether ``pattern`` is ``"type/subtype"``, ``"type/*"``, ``"*"`` or ``"*/*"``."""
    if not isinstance(pattern, str):
        return False
    normalized = normalize_pattern(pattern)
    return normalized == "*" or PATTERN_RE.fullmatch(normalized) is not None


def is_valid_limit(value: Any) -> bool:
    """A limit in a mapping: a whole, positive number of bytes."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def limits_by_pattern(setting: Any = None) -> dict[str, int] | None:
    """The mapping with its patterns normalised, or ``None`` when the setting is one number.

    Entries the system checks report (bad patterns, bad limits) are left out here.
    """
    if setting is None:
        setting = chatkit_settings.MAX_UPLOAD_BYTES
    if not isinstance(setting, dict):
        return None
    return {
        normalize_pattern(pattern): limit
        for pattern, limit in setting.items()
        if is_valid_pattern(pattern) and is_valid_limit(limit)
    }


def specificity(pattern: str, mime_type: str) -> int:
    """How closely ``pattern`` matches ``mime_type``: 3 exact, 2 ``type/*``, 1 ``*``, 0 not."""
    if pattern == mime_type:
        return 3
    if pattern.endswith("/*") and mime_type.partition("/")[0] == pattern[:-2]:
        return 2
    return 1 if pattern == "*" else 0


def max_upload_bytes(mime_type: str) -> int:
    """The largest file of type ``mime_type`` (already normalised) that is accepted."""
    limits = limits_by_pattern()
    if limits is None:
        return chatkit_settings.MAX_UPLOAD_BYTES
    mime_type = mime_type.lower()
    best, best_rank = DEFAULT_MAX_UPLOAD_BYTES, 0
    for pattern, limit in limits.items():
        rank = specificity(pattern, mime_type)
        if rank > best_rank:
            best, best_rank = limit, rank
    return best


def largest_upload_bytes() -> int:
    """The largest limit of any type: what a request body is held to before its type is known."""
    limits = limits_by_pattern()
    if limits is None:
        return chatkit_settings.MAX_UPLOAD_BYTES
    fallback = [] if "*" in limits else [DEFAULT_MAX_UPLOAD_BYTES]
    return max([*limits.values(), *fallback])


def chatkit_js_max_size() -> int | dict[str, int]:
    """``composer.attachments.maxSize`` for ChatKit.js: the same number, or the same mapping
    with its ``"*"`` fallback written out (ChatKit.js would otherwise allow 100 MB)."""
    limits = limits_by_pattern()
    if limits is None:
        return int(chatkit_settings.MAX_UPLOAD_BYTES)
    return {**limits, "*": limits.get("*", DEFAULT_MAX_UPLOAD_BYTES)}


def describe_limit(mime_type: str) -> str:
    """``"10485760 bytes for 'image/png' files"``, or ``"10485760 bytes"`` with one number."""
    limit = max_upload_bytes(mime_type)
    if limits_by_pattern() is None:
        return f"{limit} bytes"
    return f"{limit} bytes for {mime_type or 'unknown'!r} files"


def upload_too_large(mime_type: str, size: int | None = None) -> exceptions.AttachmentTooLarge:
    """The 413 for a file of ``mime_type`` over its limit, naming that limit."""
    start = "The file is larger" if size is None else f"The file is {size} bytes, more"
    return exceptions.AttachmentTooLarge(
        f"{start} than the limit of {describe_limit(mime_type)} (CHATKIT['MAX_UPLOAD_BYTES'])."
    )


def stored_file_too_large(mime_type: str) -> exceptions.StoredFileTooLarge:
    """The 409 for stored bytes found larger than their type's limit."""
    return exceptions.StoredFileTooLarge(
        f"The stored file is larger than the limit of {describe_limit(mime_type)} "
        "(CHATKIT['MAX_UPLOAD_BYTES']) and is not served."
    )
