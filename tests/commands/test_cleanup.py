"""``manage.py chatkit_cleanup``."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from chatkit_django.models import Attachment
from tests.factories import PNG, make_upload
from tests.sdk_calls import create_attachment, create_thread
from tests.storage_fixtures import stored_names

pytestmark = pytest.mark.django_db


@pytest.fixture
def attachments(client, user_factory, attachment_storage):
    """An old unattached upload, an old abandoned two-phase one, an old attached one, a new one."""
    user = user_factory()
    client.force_login(user)

    def upload() -> str:
        file = make_upload("a.png")
        return client.post(reverse("chatkit:upload"), {"file": file}).json()["id"]

    old_unattached = upload()
    old_pending = create_attachment(user, "b.png", 10, "image/png")["id"]
    old_attached = upload()
    create_thread(user, "look", [old_attached])
    new_unattached = upload()
    Attachment.objects.exclude(pk=new_unattached).update(
        created_at=timezone.now() - timedelta(days=2)
    )
    return {
        "old_unattached": old_unattached,
        "old_pending": old_pending,
        "old_attached": old_attached,
        "new_unattached": new_unattached,
        "storage": attachment_storage,
    }


def run(*args: str) -> str:
    out = StringIO()
    call_command("chatkit_cleanup", *args, stdout=out)
    return out.getvalue()


def test_dry_run_lists_and_deletes_nothing(attachments):
    before = stored_names(attachments["storage"])
    output = run("--dry-run")
    assert attachments["old_unattached"] in output
    assert attachments["old_pending"] in output
    assert attachments["old_attached"] not in output
    assert attachments["new_unattached"] not in output
    assert f"Would delete 2 unattached attachment(s), {len(PNG)} bytes" in output
    assert Attachment.objects.count() == 4
    assert stored_names(attachments["storage"]) == before


def test_deletes_old_unattached_rows_and_bytes(attachments, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        output = run()
    assert "Deleted 2 unattached attachment(s)" in output
    assert set(Attachment.objects.values_list("pk", flat=True)) == {
        attachments["old_attached"],
        attachments["new_unattached"],
    }
    assert stored_names(attachments["storage"]) == sorted(
        Attachment.objects.values_list("file", flat=True)
    )


def test_max_age_option(attachments, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        output = run("--max-age", str(3 * 24 * 3600))
    assert "Deleted 0 unattached attachment(s)" in output
    assert Attachment.objects.count() == 4
