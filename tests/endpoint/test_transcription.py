"""Dictation: DjangoChatKitServer.transcribe against a local fake of the OpenAI API."""

import json
from typing import Any

import openai
import pytest
from chatkit.types import AudioInput

from chatkit_django import transcription
from chatkit_django.transcription import (
    AudioTooLarge,
    EmptyAudio,
    TranscriptionUnavailable,
    TranscriptionUpstreamError,
    UnsupportedAudioType,
    get_openai_client,
)
from tests.chatkit_client import transcribe_request
from tests.fake_openai import FakeOpenAI
from tests.sdk_calls import process

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("mime", "filename"),
    [
        ("audio/webm;codecs=opus", "dictation.webm"),
        ("audio/ogg", "dictation.ogg"),
        ("audio/mp4", "dictation.mp4"),
    ],
)
async def test_audio_goes_to_the_transcription_api(
    fake_openai: FakeOpenAI, auser_factory: Any, mime: str, filename: str
) -> None:
    fake_openai.transcription_text = "hello there"
    user = await auser_factory()

    result = await process(transcribe_request(b"\x1aE\xdf\xa3 audio", mime), user)

    assert result == {"text": "hello there"}
    (request,) = fake_openai.requests
    assert request.path == "/v1/audio/transcriptions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.fields == {"model": "gpt-4o-transcribe"}
    assert request.files["file"] == (filename, mime.split(";")[0], b"\x1aE\xdf\xa3 audio")


async def test_model_comes_from_settings(
    fake_openai: FakeOpenAI, auser_factory: Any, settings: Any
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "TRANSCRIPTION_MODEL": "whisper-1"}
    user = await auser_factory()

    await process(transcribe_request(b"x", "audio/ogg"), user)

    assert fake_openai.requests[0].fields["model"] == "whisper-1"


@pytest.mark.parametrize(
    ("audio", "mime", "error"),
    [
        (b"x", "audio/wav", UnsupportedAudioType),
        (b"x", "video/webm", UnsupportedAudioType),
        (b"", "audio/webm", EmptyAudio),
        (b"x" * 11, "audio/webm", AudioTooLarge),
    ],
)
async def test_bad_audio_is_refused_before_any_upload(
    fake_openai: FakeOpenAI,
    auser_factory: Any,
    settings: Any,
    audio: bytes,
    mime: str,
    error: type[Exception],
) -> None:
    settings.CHATKIT = {**settings.CHATKIT, "MAX_TRANSCRIPTION_BYTES": 10}
    user = await auser_factory()

    with pytest.raises(error) as excinfo:
        await process(transcribe_request(audio, mime), user)

    assert fake_openai.requests == []
    assert 400 <= excinfo.value.status_code < 500


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (500, TranscriptionUpstreamError, 502),
        (429, TranscriptionUpstreamError, 502),
        (401, TranscriptionUnavailable, 503),
    ],
)
async def test_upstream_errors_become_transcription_errors(
    fake_openai: FakeOpenAI,
    auser_factory: Any,
    status: int,
    error: type[Exception],
    code: int,
) -> None:
    fake_openai.transcription_error = (status, "boom")
    user = await auser_factory()

    with pytest.raises(error) as excinfo:
        await process(transcribe_request(b"x", "audio/webm"), user)

    assert excinfo.value.status_code == code
    assert len(fake_openai.requests) == 1


async def test_unreachable_api_is_an_upstream_error(
    fake_openai: FakeOpenAI, auser_factory: Any, settings: Any
) -> None:
    from tests.live_server import free_port

    settings.CHATKIT = {
        **settings.CHATKIT,
        "OPENAI_CLIENT_FACTORY": "tests.endpoint.test_transcription.unreachable_client",
    }
    unreachable_client.port = free_port()  # nothing listens there
    user = await auser_factory()

    with pytest.raises(TranscriptionUpstreamError):
        await process(transcribe_request(b"x", "audio/webm"), user)


def unreachable_client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key="sk-test", base_url=f"http://127.0.0.1:{unreachable_client.port}/v1", max_retries=0
    )


async def test_no_api_key_says_so(auser_factory: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    user = await auser_factory()

    with pytest.raises(TranscriptionUnavailable) as excinfo:
        await process(transcribe_request(b"x", "audio/webm"), user)

    assert "OPENAI_API_KEY" in str(excinfo.value.detail)
    assert excinfo.value.status_code == 503


async def test_client_is_built_once_and_reused(fake_openai: FakeOpenAI, monkeypatch: Any) -> None:
    built: list[openai.AsyncOpenAI] = []
    original = transcription.build_openai_client

    def counting_build() -> openai.AsyncOpenAI:
        built.append(original())
        return built[-1]

    monkeypatch.setattr(transcription, "build_openai_client", counting_build)

    first = get_openai_client()
    for _ in range(3):
        await transcription.transcribe_audio(AudioInput(data=b"x", mime_type="audio/ogg"))

    assert built == [first] and get_openai_client() is first
    assert len(fake_openai.requests) == 3


@pytest.mark.django_db  # a sync test: the test's own transaction will do
def test_default_client_reads_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")

    client = transcription.build_openai_client()

    assert client.api_key == "sk-env"


async def test_dictation_through_the_endpoint(fake_openai: FakeOpenAI, user_client: Any) -> None:
    from tests.chatkit_client import post

    response = await post(user_client, json.dumps(transcribe_request(b"audio", "audio/webm")))

    assert (response.status_code, response.json()) == (200, {"text": "dictated text"})


@pytest.mark.parametrize(
    ("audio", "mime", "upstream", "status", "code"),
    [
        (b"x", "audio/wav", None, 415, "unsupported_audio_type"),
        (b"", "audio/webm", None, 400, "empty_audio"),
        (b"x" * 11, "audio/webm", None, 413, "audio_too_large"),
        (b"x", "audio/webm", 500, 502, "transcription_upstream_error"),
        (b"x", "audio/webm", 401, 503, "transcription_unavailable"),
    ],
)
async def test_endpoint_answers_transcription_errors_as_json(
    fake_openai: FakeOpenAI,
    user_client: Any,
    settings: Any,
    audio: bytes,
    mime: str,
    upstream: int | None,
    status: int,
    code: str,
) -> None:
    from tests.chatkit_client import post

    settings.CHATKIT = {**settings.CHATKIT, "MAX_TRANSCRIPTION_BYTES": 10}
    if upstream is not None:
        fake_openai.transcription_error = (upstream, "boom")

    response = await post(user_client, json.dumps(transcribe_request(audio, mime)))

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == code
    assert response.json()["detail"]


async def test_endpoint_without_api_key_says_so(user_client: Any, monkeypatch: Any) -> None:
    from tests.chatkit_client import post

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    response = await post(user_client, json.dumps(transcribe_request(b"x", "audio/webm")))

    assert response.status_code == 503
    assert "OPENAI_API_KEY" in response.json()["detail"]
