"""The thread admin through Django's test client: list, search, filters, transcript, permissions."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from chatkit.types import (
    AssistantMessageContent,
    AssistantMessageItem,
    FileAttachment,
    InferenceOptions,
    UserMessageItem,
    UserMessageTagContent,
    UserMessageTextContent,
)
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chatkit_django.models import Thread
from chatkit_django.models import ThreadItem as ItemRow
from tests import sdk_items
from tests.factories import (
    give_feedback,
    make_assistant_message,
    make_user_message,
    send_message,
    store_image,
    store_thread,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:chatkit_django_thread_changelist"


def change_url(thread_id: str) -> str:
    return reverse("admin:chatkit_django_thread_change", args=[quote(thread_id)])


@pytest.fixture
def admin_user(user_factory: Any) -> Any:
    return user_factory(username="boss", is_staff=True, is_superuser=True)


@pytest.fixture
def staff_factory(user_factory: Any) -> Any:
    def make(*codenames: str) -> Any:
        user = user_factory(is_staff=True)
        user.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label="chatkit_django", codename__in=codenames
            )
        )
        return user

    return make


def titles(response: Any) -> list[str]:
    return [str(r.title or r.id) for r in response.context["cl"].result_list]


# -- list -------------------------------------------------------------------------


def test_list_columns(client: Any, admin_user: Any, user_factory: Any) -> None:
    alice = user_factory(username="alice")
    untitled = store_thread(
        alice,
        [make_user_message("x", "How do I   reset\nmy password?"), make_assistant_message("x")],
    )
    store_image(alice, untitled.id)
    titled = store_thread(alice, [make_user_message("x", "hi")], title="Billing")
    reply = make_assistant_message("x", "ok")
    store_thread(alice, [reply], thread=titled.model_copy(update={"title": "Billing"}))
    give_feedback(alice, reply.id, "positive")
    give_feedback(user_factory(), reply.id, "negative")  # the latest

    client.force_login(admin_user)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    rows = {r.id: r for r in response.context["cl"].result_list}
    assert rows[untitled.id].item_count == 2
    assert rows[untitled.id].attachment_count == 1
    assert rows[untitled.id].latest_feedback is None
    assert rows[titled.id].item_count == 2
    assert rows[titled.id].attachment_count == 0
    assert rows[titled.id].latest_feedback == "negative"
    html = response.content.decode()
    assert "“How do I reset my password?”" in html  # first user message, whitespace folded
    assert "Billing" in html
    assert "▼ negative" in html


def test_list_query_count_is_constant(client: Any, admin_user: Any, user_factory: Any) -> None:
    client.force_login(admin_user)

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(reverse(CHANGELIST)).status_code == 200
        return len(ctx.captured_queries)

    def add_threads(n: int) -> None:
        for i in range(n):
            owner = user_factory()
            t = store_thread(owner, [make_user_message("x", f"q{i}"), make_assistant_message("x")])
            store_image(owner, t.id, f"f{i}.png")
            give_feedback(owner, Thread.objects.get(pk=t.id).items.last().pk)

    add_threads(2)
    few = count_queries()
    add_threads(10)
    many = count_queries()
    assert few == many
    assert len(titles(client.get(reverse(CHANGELIST)))) == 12


# -- search and filters --------------------------------------------------------------


def test_search_by_title_owner_and_message_text(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    alice = user_factory(username="alice", email="alice@corp.example")
    bob = user_factory(username="bob", email="bob@home.example")
    t1 = store_thread(alice, [make_user_message("x", "my parrot is ill")], title="Pets")
    t2 = store_thread(bob, [make_user_message("x", "hello"), make_assistant_message("x", "parrot")])
    t3 = store_thread(bob, [make_user_message("x", "invoice please")], title="Billing")
    client.force_login(admin_user)

    def search(q: str) -> set[str]:
        response = client.get(reverse(CHANGELIST), {"q": q})
        return {r.id for r in response.context["cl"].result_list}

    assert search("parrot") == {t1.id, t2.id}  # user and assistant text, each thread once
    assert search("billing") == {t3.id}
    assert search("alice") == {t1.id}
    assert search("home.example") == {t2.id, t3.id}
    assert search("nothing-like-this") == set()


def test_filters(client: Any, admin_user: Any, user_factory: Any) -> None:
    alice = user_factory()
    bob = user_factory()
    plain = store_thread(alice, [make_user_message("x")])
    with_file = store_thread(alice, [make_user_message("x")])
    store_image(alice, with_file.id)
    reply = make_assistant_message("x")
    unhappy = store_thread(bob, [make_user_message("x"), reply], status={"type": "locked"})
    give_feedback(bob, reply.id, "negative")
    reply2 = make_assistant_message("x")
    happy = store_thread(bob, [reply2], status={"type": "closed", "reason": "done"})
    give_feedback(bob, reply2.id, "positive")
    client.force_login(admin_user)

    def listed(**params: str) -> set[str]:
        response = client.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
        return {r.id for r in response.context["cl"].result_list}

    assert listed(has_attachments="yes") == {with_file.id}
    assert listed(has_attachments="no") == {plain.id, unhappy.id, happy.id}
    assert listed(negative_feedback="yes") == {unhappy.id}
    assert listed(negative_feedback="no") == {plain.id, with_file.id, happy.id}
    assert listed(status="locked") == {unhappy.id}
    assert listed(status="closed") == {happy.id}
    assert listed(status="active") == {plain.id, with_file.id}
    assert listed(owner__id__exact=str(bob.pk)) == {unhappy.id, happy.id}
    created = Thread.objects.get(pk=plain.id).created_at
    day = timedelta(days=1)
    assert plain.id in listed(created_at__gte=(created - day).isoformat())
    assert listed(created_at__gte=(created + day).isoformat()) == set()


# -- change page: the transcript -------------------------------------------------------


def transcript_html(client: Any, thread_id: str, **params: str) -> str:
    response = client.get(change_url(thread_id), params)
    assert response.status_code == 200
    html = response.content.decode()
    start = html.index('id="chatkit-transcript"')
    return html[start : html.index("</fieldset>", start)]


def test_transcript_shows_every_item_type(client: Any, admin_user: Any, user_factory: Any) -> None:
    owner = user_factory()
    items = [build("x") for build in sdk_items.ITEM_BUILDERS.values()]
    thread = store_thread(owner, items)
    client.force_login(admin_user)
    html = transcript_html(client, thread.id)

    # One article per item, in thread order.
    shown = re.findall(r'id="item-([^"]+)"', html)
    assert sorted(shown) == sorted(i.id for i in items)
    stored = ItemRow.objects.filter(thread_id=thread.id).order_by("created_at", "seq", "id")
    assert shown == list(stored.values_list("id", flat=True))
    # User message: text, @-mention, quoted text, attachment chips.
    assert "Ask " in html and "@Ada Lovelace" in html and "the quoted passage" in html
    assert "report.pdf" in html and "cat.png" in html
    # Assistant message with annotations as links (only http(s) ones).
    assert '<a href="https://example.com/docs"' in html and "Spec" in html
    # Widget text, workflow tasks, task, client tool call.
    assert "Hello" in html and "Thought about it" in html and "Table for two" in html
    assert "get_location" in html and "48.85" in html
    # Structured input: answers, skipped, pending.
    assert "Which size?" in html and "S, M" in html
    assert "Anything else?" in html and "skipped" in html and "no answer yet" in html
    # Hidden items are visibly marked.
    assert html.count("hidden from the user") == 2
    assert "/checkout" in html and "user cancelled" in html
    # Item JSON for debugging.
    assert "&quot;call_id&quot;: &quot;call_1&quot;" in html


def test_transcript_attachment_chips_link_to_the_content_view(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    owner = user_factory()
    thread = store_thread(owner, [])
    image = store_image(owner, thread.id)
    message = UserMessageItem(
        id="msg_with_image",
        thread_id=thread.id,
        created_at=sdk_items.NAIVE,
        content=[UserMessageTextContent(text="look")],
        attachments=[image],
        inference_options=InferenceOptions(),
    )
    store_thread(owner, [message], thread=thread)
    client.force_login(admin_user)
    html = transcript_html(client, thread.id)
    url = reverse("chatkit:attachment-content", kwargs={"attachment_id": image.id})
    assert f'<img src="{url}"' in html
    assert f'<a href="{url}" download="cat.png">' in html
    # The link works for the admin (session auth on the access-checked view).
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"


def test_transcript_paginates(client: Any, admin_user: Any, user_factory: Any) -> None:
    from chatkit_django.admin import ThreadAdmin

    owner = user_factory()
    per_page = ThreadAdmin.transcript_per_page
    items = [make_user_message("x", f"message {i}") for i in range(per_page + 3)]
    thread = store_thread(owner, items)
    client.force_login(admin_user)
    first = transcript_html(client, thread.id)
    assert len(re.findall(r'id="item-', first)) == per_page
    assert "Page 1 of 2" in first and "?page=2" in first
    second = transcript_html(client, thread.id, page="2")
    assert re.findall(r'id="item-([^"]+)"', second) == [i.id for i in items[per_page:]]


def test_change_page_query_count_does_not_grow_with_the_page(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    owner = user_factory()
    client.force_login(admin_user)

    def queries_for(n: int) -> int:
        thread = store_thread(owner, [])
        items = []
        for i in range(n):
            image = store_image(owner, thread.id, f"img{i}.png")
            items.append(make_user_message("x", f"m{i}", attachments=[image]))
            items.append(make_assistant_message("x", f"a{i}"))
        store_thread(owner, items, thread=thread)
        for item in items[1::2]:
            give_feedback(owner, item.id)
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(change_url(thread.id)).status_code == 200
        return len(ctx.captured_queries)

    assert queries_for(1) == queries_for(20)


def test_change_page_is_read_only(client: Any, admin_user: Any, user_factory: Any) -> None:
    thread = store_thread(user_factory(), [make_user_message("x")], title="Keep me")
    client.force_login(admin_user)
    response = client.get(change_url(thread.id))
    html = response.content.decode()
    assert "<textarea" not in html
    assert 'name="_save"' not in html
    assert 'name="title"' not in html
    response = client.post(change_url(thread.id), {"title": "Changed", "data": "{}"})
    assert response.status_code == 403
    assert Thread.objects.get(pk=thread.id).title == "Keep me"
    assert client.get(reverse("admin:chatkit_django_thread_add")).status_code == 403


# -- escaping ------------------------------------------------------------------------

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_user_content_is_escaped(client: Any, admin_user: Any, user_factory: Any) -> None:
    owner = user_factory()
    thread = store_thread(owner, [], title=XSS)
    evil_name = '"><img src=x onerror=alert(2)>.png'
    image = store_image(owner, thread.id, evil_name)
    message = UserMessageItem(
        id="msg_xss",
        thread_id=thread.id,
        created_at=sdk_items.NAIVE,
        content=[
            UserMessageTextContent(text=XSS),
            UserMessageTagContent(id="t", text=XSS, data={}, group=XSS),
        ],
        attachments=[image, FileAttachment(id="atc_gone", name=XSS, mime_type="text/html")],
        quoted_text=XSS,
        inference_options=InferenceOptions(model=XSS),
    )
    store_thread(owner, [message], thread=thread)
    client.force_login(admin_user)
    for url in (change_url(thread.id), reverse(CHANGELIST), reverse(CHANGELIST) + "?q=script"):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html
        assert "<img src=x onerror" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    attachment_list = client.get(reverse("admin:chatkit_django_attachment_changelist"))
    html = attachment_list.content.decode()
    assert '"><img src=x' not in html and "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;.png" in html


def test_assistant_markdown_is_rendered_safely(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    text = (
        "**bold** and [docs](https://example.com/d)\n\n"
        "[click](javascript:alert(1)) <script>alert(3)</script> <b onclick=x>raw</b>\n\n"
        "<div onmouseover=alert(4)>block</div>\n\n![img](https://tracker.example/p.png)"
    )
    message = AssistantMessageItem(
        id="msg_md",
        thread_id="x",
        created_at=sdk_items.NAIVE,
        content=[AssistantMessageContent(text=text)],
    )
    thread = store_thread(user_factory(), [message])
    client.force_login(admin_user)
    html = transcript_html(client, thread.id)
    start = html.index('class="chatkit-markdown"')
    markdown_html = html[start : html.index('<details class="chatkit-json">', start)]
    tags = re.findall(r"<[a-zA-Z][^>]*>", markdown_html)
    assert {re.match(r"<(\w+)", t).group(1) for t in tags} <= {"p", "strong", "a"}
    assert all(" on" not in t and "javascript" not in t and "tracker" not in t for t in tags)
    assert '<a href="https://example.com/d" rel="noopener noreferrer nofollow">' in tags
    assert '<a rel="noopener noreferrer nofollow">' in tags  # the javascript: link, defused
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in markdown_html  # raw HTML shown as text
    assert "&lt;div onmouseover=alert(4)&gt;" in markdown_html
    assert "<strong>bold</strong>" in markdown_html


def test_javascript_annotation_urls_are_not_links(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    from chatkit.types import Annotation, URLSource

    message = AssistantMessageItem(
        id="msg_ann",
        thread_id="x",
        created_at=sdk_items.NAIVE,
        content=[
            AssistantMessageContent(
                text="see",
                annotations=[Annotation(source=URLSource(title="Bad", url="javascript:alert(1)"))],
            )
        ],
    )
    thread = store_thread(user_factory(), [message])
    client.force_login(admin_user)
    html = transcript_html(client, thread.id)
    assert 'href="javascript:' not in html
    assert "Bad" in html


# -- permissions -------------------------------------------------------------------


def test_staff_without_view_thread_sees_nothing(
    client: Any, staff_factory: Any, user_factory: Any
) -> None:
    thread = store_thread(user_factory(), [make_user_message("x", "secret words")])
    client.force_login(staff_factory())
    assert client.get(reverse(CHANGELIST)).status_code == 403
    assert client.get(change_url(thread.id)).status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert "chatkit_django/thread" not in index


def test_view_permission_reads_but_cannot_delete(
    client: Any, staff_factory: Any, user_factory: Any
) -> None:
    thread = store_thread(user_factory(), [make_user_message("x", "readable words")])
    client.force_login(staff_factory("view_thread"))
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert "delete_selected" not in response.content.decode()
    assert "readable words" in transcript_html(client, thread.id)
    delete_url = reverse("admin:chatkit_django_thread_delete", args=[quote(thread.id)])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Thread.objects.filter(pk=thread.id).exists()


def test_every_sdk_item_type_has_a_transcript_template() -> None:
    from django.template.loader import get_template

    from chatkit_django.transcript import TEMPLATE_DIR, TranscriptBuilder, item_types

    types = item_types()
    assert "user_message" in types and "sdk_hidden_context" in types
    for item_type in types:
        assert hasattr(TranscriptBuilder, f"{item_type}_context"), item_type
        get_template(f"{TEMPLATE_DIR}/{item_type}.html")


# -- attachments and feedback ----------------------------------------------------------


def test_attachment_admin_lists_files_with_thumbnails(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    owner = user_factory(username="dora")
    thread = store_thread(owner, [])
    image = store_image(owner, thread.id, "holiday.png")
    client.force_login(admin_user)

    def count(n: int) -> int:
        for i in range(n):
            store_image(owner, thread.id, f"more{n}-{i}.png")
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(reverse("admin:chatkit_django_attachment_changelist"))
        assert response.status_code == 200
        return len(ctx.captured_queries)

    assert count(1) == count(8)
    html = client.get(reverse("admin:chatkit_django_attachment_changelist")).content.decode()
    url = reverse("chatkit:attachment-content", kwargs={"attachment_id": image.id})
    assert f'<img src="{url}" alt="holiday.png"' in html
    assert "dora" in html and "image/png" in html
    change = client.get(reverse("admin:chatkit_django_attachment_change", args=[quote(image.id)]))
    assert change.status_code == 200
    assert 'name="_save"' not in change.content.decode()


def test_feedback_admin(client: Any, admin_user: Any, user_factory: Any) -> None:
    owner = user_factory(username="erin")
    reply = make_assistant_message("x", "an answer")
    thread = store_thread(owner, [reply], title="Feedback thread")
    give_feedback(owner, reply.id, "negative")
    client.force_login(admin_user)
    response = client.get(reverse("admin:chatkit_django_feedback_changelist"), {"kind": "negative"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "erin" in html and "Feedback thread" in html and reply.id in html
    assert [f.item_id for f in response.context["cl"].result_list] == [reply.id]
    assert thread.id


def test_ids_that_look_like_admin_escapes(client: Any, admin_user: Any, user_factory: Any) -> None:
    """The admin escapes "_XX" in URLs; ids like thr_2F... still open their own page."""
    thread = store_thread(user_factory(), [make_user_message("x", "escaped")], thread=None)
    tricky = Thread.objects.get(pk=thread.id)
    Thread.objects.filter(pk=tricky.pk).update(id="thr_2F_41")
    ItemRow.objects.filter(thread_id=tricky.pk).update(thread_id="thr_2F_41")
    client.force_login(admin_user)
    listing = client.get(reverse(CHANGELIST)).content.decode()
    assert change_url("thr_2F_41") in listing
    assert "escaped" in transcript_html(client, "thr_2F_41")


def test_transcript_says_who_sent_messages_the_owner_did_not(
    client: Any, admin_user: Any, user_factory: Any
) -> None:
    owner = user_factory(username="owner")
    helper = user_factory(username="helper")
    helper.user_permissions.add(
        Permission.objects.get(content_type__app_label="chatkit_django", codename="change_thread")
    )
    helper = type(helper).objects.get(pk=helper.pk)
    asked = make_user_message("x", "owner asks")
    thread = store_thread(owner, [asked, make_assistant_message("x")])
    added = send_message(helper, thread.id, make_user_message("x", "helper adds"))
    client.force_login(admin_user)
    html = client.get(change_url(thread.id)).content.decode()

    def article(item_id: str) -> str:
        start = html.index(f'id="item-{item_id}"')
        return html[start : html.index("</article>", start)]

    assert "sent by helper" in article(added.id)
    assert "sent by" not in article(asked.id)
    assert html.count("sent by") == 1
