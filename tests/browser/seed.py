"""Seed the example project's database for the admin browser test.

Run in a subprocess with the example project's settings (``CHATKIT_DEMO_DATA`` pointing at
a temporary directory): ``python -m tests.browser.seed``. Prints the ids it created as JSON.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta


def seed() -> dict[str, str]:
    from asgiref.sync import async_to_sync
    from chatkit.types import (
        AssistantMessageContent,
        AssistantMessageItem,
        HiddenContextItem,
        ImageAttachment,
        InferenceOptions,
        StructuredInputAnswer,
        StructuredInputFreeform,
        StructuredInputItem,
        StructuredInputMultipleChoice,
        StructuredInputMultipleChoiceOption,
        ThreadMetadata,
        UserMessageItem,
        UserMessageTagContent,
        UserMessageTextContent,
    )
    from django.contrib.auth import get_user_model
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from chatkit_django.attachments import get_attachment_storage
    from chatkit_django.context import ChatKitContext
    from chatkit_django.models import Attachment as AttachmentRow
    from chatkit_django.models import Feedback, ThreadItem
    from chatkit_django.store import DjangoStore
    from tests.factories import make_picture

    User = get_user_model()
    User.objects.create_superuser("admin", "admin@example.com", "admin-pw")
    customer = User.objects.create_user("ada", "ada@example.com", "pw")
    store, ctx = DjangoStore(), ChatKitContext(user=customer)
    start = datetime.now() - timedelta(minutes=10)
    thread = ThreadMetadata(id="thr_browser", title="Broken espresso machine", created_at=start)
    async_to_sync(store.save_thread)(thread, ctx)

    png = make_picture()
    image = ImageAttachment(
        id="atc_photo",
        name="machine-photo.png",
        mime_type="image/png",
        thread_id=thread.id,
        preview_url="http://127.0.0.1/placeholder",
    )
    file_name = get_attachment_storage().save("chatkit/atc_photo.png", ContentFile(png))
    AttachmentRow.objects.create(
        id=image.id,
        owner=customer,
        thread_id=thread.id,
        name=image.name,
        mime_type=image.mime_type,
        type="image",
        size=len(png),
        file=file_name,
        uploaded_at=timezone.now(),
        data=image.model_dump(mode="json", by_alias=True),
    )
    items = [
        UserMessageItem(
            id="msg_question",
            thread_id=thread.id,
            created_at=start,
            content=[
                UserMessageTextContent(text="My "),
                UserMessageTagContent(id="prod_7", text="Barista Pro", data={}, group="Products"),
                UserMessageTextContent(text=" leaks water from the bottom. Photo attached."),
            ],
            attachments=[image],
            inference_options=InferenceOptions(),
        ),
        HiddenContextItem(
            id="hcx_plan",
            thread_id=thread.id,
            created_at=start + timedelta(seconds=1),
            content="Customer plan: premium, warranty until 2027",
        ),
        AssistantMessageItem(
            id="msg_reply",
            thread_id=thread.id,
            created_at=start + timedelta(seconds=2),
            content=[
                AssistantMessageContent(
                    text="Sorry to hear that. **Two quick questions** so I can help:"
                )
            ],
        ),
        StructuredInputItem(
            id="si_details",
            thread_id=thread.id,
            created_at=start + timedelta(seconds=3),
            status="answered",
            inputs=[
                StructuredInputMultipleChoice(
                    id="when",
                    question="When does it leak?",
                    options=[
                        StructuredInputMultipleChoiceOption(value="While brewing"),
                        StructuredInputMultipleChoiceOption(value="All the time"),
                    ],
                    answer=StructuredInputAnswer(values=["While brewing"]),
                ),
                StructuredInputFreeform(
                    id="serial",
                    question="What is the serial number?",
                    answer=StructuredInputAnswer(skipped=True),
                ),
            ],
        ),
        AssistantMessageItem(
            id="msg_advice",
            thread_id=thread.id,
            created_at=start + timedelta(seconds=4),
            content=[
                AssistantMessageContent(
                    text="A leak while brewing usually means a worn **group gasket**.\n\n"
                    "1. Unplug the machine.\n2. Replace the gasket (part GS-58)."
                )
            ],
        ),
    ]
    for item in items:
        async_to_sync(store.add_thread_item)(thread.id, item, ctx)
    Feedback.objects.create(
        thread_id=thread.id,
        item=ThreadItem.objects.get(pk="msg_advice"),
        user=customer,
        kind=Feedback.Kind.NEGATIVE,
    )
    return {"thread_id": thread.id, "username": "admin", "password": "admin-pw"}


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    django.setup()
    print(json.dumps(seed()))
