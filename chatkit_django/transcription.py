"""Dictation: ChatKit's ``input.transcribe`` answered by OpenAI's transcription API.

``DjangoChatKitServer.transcribe`` calls ``transcribe_audio``. Every refusal is a
``TranscriptionError`` (a DRF ``APIException``), which the endpoint answers as a JSON error
with its status: bad audio is the client's fault (4xx), a missing key or a failing upstream
is ours (503, 502). The OpenAI client is built once per process and reused.
"""

from __future__ import annotations

import asyncio
import logging
import weakref

import openai
from chatkit.types import AudioInput, TranscriptionResult
from django.utils.translation import gettext_lazy as _
from rest_framework import status
from rest_framework.exceptions import APIException

from chatkit_django.conf import chatkit_settings, on_reload

logger = logging.getLogger(__name__)

# The media types ChatKit.js records dictation in, and the file extension the API needs to
# recognise each (it goes by the upload's file name).
AUDIO_EXTENSIONS: dict[str, str] = {
    "audio/webm": "webm",
    "audio/ogg": "ogg",
    "audio/mp4": "mp4",
}


class TranscriptionError(APIException):
    """Base class of every dictation refusal."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_detail = _("The audio could not be transcribed.")
    default_code = "transcription_failed"


class UnsupportedAudioType(TranscriptionError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    default_detail = _("Dictation accepts audio/webm, audio/ogg and audio/mp4 only.")
    default_code = "unsupported_audio_type"


class EmptyAudio(TranscriptionError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("The dictated audio is empty.")
    default_code = "empty_audio"


class AudioTooLarge(TranscriptionError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The audio is larger than CHATKIT['MAX_TRANSCRIPTION_BYTES'].")
    default_code = "audio_too_large"


class TranscriptionUnavailable(TranscriptionError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = _(
        "Dictation is not configured: set the OPENAI_API_KEY environment variable, or "
        "CHATKIT['OPENAI_CLIENT_FACTORY']."
    )
    default_code = "transcription_unavailable"


class TranscriptionUpstreamError(TranscriptionError):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = _("The transcription service failed; try again.")
    default_code = "transcription_upstream_error"


# One client per event loop: an ASGI server runs one loop, so one client per process. Under
# WSGI, Django runs each async view in a loop of its own, and httpx's connection pool must not
# cross loops.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
    weakref.WeakKeyDictionary()
)


def build_openai_client() -> openai.AsyncOpenAI:
    """``CHATKIT['OPENAI_CLIENT_FACTORY']()``, or a client configured from the environment.

    Raises ``TranscriptionUnavailable`` when no API key is configured.
    """
    factory = chatkit_settings.OPENAI_CLIENT_FACTORY
    try:
        return factory() if factory is not None else openai.AsyncOpenAI()
    except openai.OpenAIError as e:  # "The api_key client option must be set..."
        raise TranscriptionUnavailable from e


def get_openai_client() -> openai.AsyncOpenAI:
    """The ``AsyncOpenAI`` client, built on first use and then reused (its connection pool
    too). A failed build is not cached: setting the key later works."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = build_openai_client()
    return client


async def aclose_openai_client() -> None:
    """Close and forget this event loop's client, e.g. before the loop ends."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.close()


on_reload(_clients.clear)


def check_audio(audio: AudioInput) -> str:
    """The file extension for ``audio``, or the ``TranscriptionError`` that refuses it."""
    extension = AUDIO_EXTENSIONS.get(audio.media_type.strip().lower())
    if extension is None:
        raise UnsupportedAudioType(
            _("Dictation accepts audio/webm, audio/ogg and audio/mp4, not %(type)r.")
            % {"type": audio.media_type}
        )
    if not audio.data:
        raise EmptyAudio
    limit = chatkit_settings.MAX_TRANSCRIPTION_BYTES
    if len(audio.data) > limit:
        raise AudioTooLarge(
            _("The audio is %(size)d bytes; CHATKIT['MAX_TRANSCRIPTION_BYTES'] is %(limit)d.")
            % {"size": len(audio.data), "limit": limit}
        )
    return extension


async def transcribe_audio(audio: AudioInput, *, model: str | None = None) -> TranscriptionResult:
    """Send ``audio`` to ``POST /audio/transcriptions``; the text for the composer."""
    extension = check_audio(audio)
    client = get_openai_client()
    try:
        result = await client.audio.transcriptions.create(
            model=model or chatkit_settings.TRANSCRIPTION_MODEL,
            file=(f"dictation.{extension}", audio.data, audio.media_type),
        )
    except openai.APIStatusError as e:
        logger.warning("Transcription failed upstream: %s %s", e.status_code, e.message)
        if e.status_code == status.HTTP_401_UNAUTHORIZED:
            raise TranscriptionUnavailable(
                _("The transcription service refused the API key.")
            ) from e
        raise TranscriptionUpstreamError from e
    except openai.APIError as e:  # connection errors, timeouts, malformed responses
        logger.warning("Transcription failed upstream: %s", e)
        raise TranscriptionUpstreamError from e
    text = getattr(result, "text", None)
    if not isinstance(text, str):  # a 200 that is not a transcription
        logger.warning("Transcription answer without text: %r", result)
        raise TranscriptionUpstreamError
    return TranscriptionResult(text=text)
