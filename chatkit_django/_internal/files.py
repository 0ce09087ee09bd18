"""Byte-level helpers for uploads: MIME matching, content sniffing, safe names, size limits."""

from __future__ import annotations

import mimetypes
import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from django.core.files.uploadhandler import FileUploadHandler, StopUpload

# Declared image types whose first bytes we can verify. Only these become ImageAttachments
# (served inline as previews); any other type is a FileAttachment, served as a download.
IMAGE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # and b"WEBP" at offset 8, checked below
}
SNIFF_BYTES = 16
DISPLAY_NAME_MAX = 255


def normalize_mime(value: str | None) -> str:
    """``"Image/PNG; charset=x"`` -> ``"image/png"``; empty for a missing type."""
    return (value or "").split(";", 1)[0].strip().lower()


def guess_mime(name: str | None) -> str:
    """The type a file name suggests, for clients that declare none."""
    return normalize_mime(mimetypes.guess_type(name or "")[0]) or "application/octet-stream"


# type "/" subtype, each an RFC 6838 restricted name: no spaces, controls or NUL, 127 at most.
MIME_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


def mime_allowed(mime: str, patterns: Iterable[str]) -> bool:
    """Whether ``mime`` is a well-formed type matching one of ``patterns``.

    Patterns are ``"image/png"``, ``"image/*"`` or ``"*/*"``. A malformed type (a line break,
    a NUL, an overlong name) matches nothing: it would end up in a ``Content-Type`` header.
    """
    if not MIME_RE.fullmatch(mime):
        return False
    major = mime.partition("/")[0]
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern in (mime, "*/*") or (pattern.endswith("/*") and pattern[:-2] == major):
            return True
    return False


def is_image(mime: str) -> bool:
    return mime in IMAGE_SIGNATURES


def bytes_match_type(mime: str, head: bytes) -> bool:
    """Whether the first bytes of a file are what its declared image type promises.

    Types we cannot verify pass: they are never served inline.
    """
    signatures = IMAGE_SIGNATURES.get(mime)
    if signatures is None:
        return True
    if not head.startswith(signatures):
        return False
    return mime != "image/webp" or head[8:12] == b"WEBP"


def display_name(name: str | None) -> str:
    """The client's file name, kept for display only: control characters removed, bounded."""
    cleaned = "".join(ch for ch in (name or "") if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[:DISPLAY_NAME_MAX] or "file"


def storage_name(attachment_id: str, mime: str, prefix: str = "chatkit") -> str:
    """A storage path generated from the id, never from the client's file name."""
    extension = mimetypes.guess_extension(mime) or ""
    return f"{prefix}/{attachment_id}{extension}"


class UploadTooLarge(Exception):
    """Raised by ``LimitedReader`` when the body grows past the limit."""


class LimitedReader:
    """A read-only, non-seekable stream that refuses to yield more than ``limit`` bytes.

    Storage backends read it chunk by chunk, so a body is never held whole in memory.
    ``head`` holds its first bytes, read ahead for content sniffing.
    """

    def __init__(self, stream: Any, limit: int, content_type: str = "") -> None:
        self._stream = stream
        self._limit = limit
        self.content_type = content_type  # S3Storage reads it for the object's ContentType
        self.size = 0
        self.head = self._read(SNIFF_BYTES)
        self._pending = self.head

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self._stream.read(size - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._limit + 1
        data, self._pending = self._pending[:size], self._pending[size:]
        if len(data) < size:
            data += self._stream.read(size - len(data)) or b""
        self.size += len(data)
        if self.size > self._limit:
            raise UploadTooLarge
        return data

    closed = False

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        pass


class CappedFile:
    """A read-only view of an open file that ends after ``limit`` bytes, however long the
    file has grown since its size was checked. Closing it closes the file."""

    def __init__(self, file: Any, limit: int) -> None:
        self.file = file
        self.remaining = limit

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        data = self.file.read(size) if size else b""
        self.remaining -= len(data)
        return data

    def close(self) -> None:
        self.file.close()


class LimitedUploadHandler(FileUploadHandler):
    """First in the upload handler chain: stops a multipart upload past ``limit`` bytes.

    With ``limit_for``, each file part is held to ``limit_for(its type)`` instead, the type
    being the part's declared one (else guessed from its name), as the direct upload view
    reads it. Django's own handlers then spool the accepted bytes to memory (small files)
    or a temporary file, never the whole request in memory. The view reads ``exceeded``
    and ``mime_type`` (the type of the part that went past its limit).
    """

    def __init__(
        self,
        limit: int,
        request: Any = None,
        limit_for: Callable[[str], int] | None = None,
    ) -> None:
        super().__init__(request)
        self.limit = limit
        self.limit_for = limit_for
        self.mime_type = ""
        self.received = 0
        self.exceeded = False

    def new_file(
        self,
        field_name: str,
        file_name: str,
        content_type: str,
        content_length: int | None,
        charset: str | None = None,
        content_type_extra: dict[str, Any] | None = None,
    ) -> None:
        super().new_file(
            field_name, file_name, content_type, content_length, charset, content_type_extra
        )
        if self.limit_for is not None:
            self.mime_type = normalize_mime(content_type) or guess_mime(file_name)
            self.limit = self.limit_for(self.mime_type)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            # connection_reset=False: Django reads and drops the rest of the body, so the
            # client still gets our 413 instead of a reset connection.
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None
