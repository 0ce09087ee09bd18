"""Rich input: what the converters and the dictation client save, against a baseline run alongside.

Three measurements, each printed with its baseline and the ratio (no thresholds: read them):

1. Text attachments. ``DjangoThreadItemConverter`` reads at most what
   ``ATTACHMENT_TEXT_MAX_CHARS`` can use. Baseline: read the whole file, then cut (what a
   converter written from the SDK guide's sketch does). Peak Python memory (tracemalloc) and
   median time, for a ``--text-mb`` MB file on local disk.
2. Generated images. ``DjangoResponseStreamConverter`` stores the image as an attachment.
   Baseline: the SDK's ``ResponseStreamConverter``, whose data URL ends up inside the thread
   item. Size of the stored thread item JSON for a ``--image-kb`` KB image.
3. Dictation. ``get_openai_client()`` builds the client once and reuses its connections.
   Baseline: a new ``AsyncOpenAI`` per request. Median time of ``--calls`` transcriptions
   against the test suite's fake OpenAI server on 127.0.0.1 (real HTTP, real multipart).

    .venv/bin/python benchmarks/rich_input.py
    .venv/bin/python benchmarks/rich_input.py --text-mb 50 --calls 100
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure(workdir: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "chatkit_django"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(workdir, "b.db"),
            }
        },
        STORAGES={
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": os.path.join(workdir, "files")},
            }
        },
        ROOT_URLCONF=__name__,  # urlpatterns below, set once Django is set up
        CHATKIT={
            "SERVER_CLASS": "chatkit_django.server.DjangoChatKitServer",
            "BASE_URL": "http://bench",
        },
    )
    django.setup()
    from django.urls import include, path

    global urlpatterns
    urlpatterns = [path("chatkit/", include("chatkit_django.urls"))]


urlpatterns: list[Any] = []


async def median(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def peak_bytes(call: Callable[[], Awaitable[Any]]) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    await call()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def row(label: str, ours: float, baseline: float, unit: str) -> None:
    ratio = baseline / ours if ours else float("inf")
    print(
        f"  {label:<34} ours {ours:>12,.2f} {unit:<3} baseline {baseline:>12,.2f} {unit:<3} "
        f"baseline/ours {ratio:>8.1f}x"
    )


async def bench_text(user: Any, megabytes: int, repeat: int) -> None:
    from asgiref.sync import sync_to_async
    from chatkit.types import FileAttachment
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from chatkit_django.agents import DjangoThreadItemConverter
    from chatkit_django.attachments import get_attachment_storage
    from chatkit_django.conf import chatkit_settings
    from chatkit_django.context import ChatKitContext
    from chatkit_django.models import Attachment
    from chatkit_django.store import DjangoStore

    line = b"The quick brown fox jumps over the lazy dog. 0123456789\n"
    content = line * (megabytes * 1024 * 1024 // len(line))
    storage = get_attachment_storage()
    name = await sync_to_async(storage.save)("chatkit/big.txt", ContentFile(content))
    sdk = FileAttachment(id="atc_big", name="big.txt", mime_type="text/plain")
    await Attachment.objects.acreate(
        id=sdk.id,
        owner=user,
        name=sdk.name,
        mime_type=sdk.mime_type,
        type="file",
        size=len(content),
        file=name,
        uploaded_at=timezone.now(),
        data=sdk.model_dump(mode="json"),
    )
    converter = DjangoThreadItemConverter(ChatKitContext(user=user), store=DjangoStore())
    max_chars = chatkit_settings.ATTACHMENT_TEXT_MAX_CHARS

    async def ours() -> Any:
        return await converter.attachment_to_message_content(sdk)

    async def baseline() -> Any:
        def read() -> bytes:
            with storage.open(name, "rb") as f:
                return f.read()

        text = (await sync_to_async(read)()).decode("utf-8", errors="replace")[:max_chars]
        return {"type": "input_text", "text": text}

    assert len((await ours())["text"]) >= max_chars
    print(f"Text attachment: {len(content) / 1e6:.1f} MB file, cap {max_chars:,} characters")
    row("peak memory", await peak_bytes(ours) / 1e6, await peak_bytes(baseline) / 1e6, "MB")
    row("median time", await median(ours, repeat) * 1e3, await median(baseline, repeat) * 1e3, "ms")


async def bench_images(user: Any, kilobytes: int) -> None:
    from chatkit.agents import ResponseStreamConverter
    from chatkit.types import GeneratedImage, GeneratedImageItem, ThreadMetadata
    from django.utils import timezone

    from chatkit_django.agents import DjangoResponseStreamConverter
    from chatkit_django.context import ChatKitContext
    from chatkit_django.store import DjangoStore, dump

    image = base64.b64encode(os.urandom(kilobytes * 1024)).decode()
    thread = ThreadMetadata(id="thr_bench", created_at=timezone.now())
    context = ChatKitContext(user=user)
    await DjangoStore().save_thread(thread, context)

    async def item_size(converter: Any) -> int:
        url = await converter.base64_image_to_url(image_id="ig_1", base64_image=image)
        item = GeneratedImageItem(
            id="msg_1",
            thread_id=thread.id,
            created_at=timezone.now(),
            image=GeneratedImage(id="ig_1", url=url),
        )
        return len(json.dumps(dump(item)))

    ours = await item_size(DjangoResponseStreamConverter(thread, context))
    baseline = await item_size(ResponseStreamConverter())
    print(f"Generated image: {kilobytes} KB image")
    row("stored thread item JSON", ours / 1e3, baseline / 1e3, "KB")


async def bench_dictation(calls: int) -> None:
    import openai
    from chatkit.types import AudioInput
    from django.test.utils import override_settings

    from chatkit_django import transcription
    from tests import fake_openai

    server = fake_openai.FakeOpenAI()
    fake_openai.current = server
    audio = AudioInput(data=os.urandom(32 * 1024), mime_type="audio/webm")
    try:
        with override_settings(
            CHATKIT={
                "SERVER_CLASS": "chatkit_django.server.DjangoChatKitServer",
                "OPENAI_CLIENT_FACTORY": "tests.fake_openai.client_factory",
            }
        ):

            async def ours() -> Any:
                return await transcription.transcribe_audio(audio)

            async def baseline() -> Any:
                client = openai.AsyncOpenAI(api_key="sk-test", base_url=server.url, max_retries=0)
                async with client:
                    return await client.audio.transcriptions.create(
                        model="gpt-4o-transcribe", file=("dictation.webm", audio.data, "audio/webm")
                    )

            await ours()  # build the client and open its connection once
            await baseline()
            ours_s = await median(ours, calls)
            baseline_s = await median(baseline, calls)
            await transcription.aclose_openai_client()
    finally:
        server.close()
    print(f"Dictation: {calls} transcriptions of 32 KB through the real openai client")
    row("median time per call", ours_s * 1e3, baseline_s * 1e3, "ms")


async def main(args: argparse.Namespace) -> None:
    from django.contrib.auth.models import User

    user = await User.objects.acreate(username="bench")
    await bench_text(user, args.text_mb, args.repeat)
    await bench_images(user, args.image_kb)
    await bench_dictation(args.calls)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text-mb", type=int, default=20)
    parser.add_argument("--image-kb", type=int, default=1024)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        configure(workdir)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        asyncio.run(main(arguments))
