"""Threads out of the database as JSON (the SDK's own serialisation) or Markdown.

JSON exports are the SDK's ``chatkit.types.Thread`` (metadata plus every item in a
``Page``) dumped as the store dumps it, so ``load_threads()`` validates them back into
equal SDK models. Both formats are produced incrementally: threads and their items are read
with ``iterator()``, so an export of many long threads never holds them all in memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from chatkit.types import (
    AssistantMessageItem,
    ClientToolCallItem,
    EndOfTurnItem,
    GeneratedImageItem,
    HiddenContextItem,
    Page,
    SDKHiddenContextItem,
    StructuredInputItem,
    TaskItem,
    Thread,
    ThreadItem,
    ThreadMetadata,
    UserMessageItem,
    UserMessageTagContent,
    WidgetItem,
    WorkflowItem,
)
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from chatkit_django import models
from chatkit_django._internal.ordering import ROW_ORDER
from chatkit_django.store import ThreadItemAdapter, dump

FORMAT = "chatkit-django.threads"
VERSION = 1
CHUNK_SIZE = 500
BATCH_SIZE = 100


def iter_sdk_threads(
    threads: QuerySet[models.Thread], batch_size: int = BATCH_SIZE
) -> Iterator[Thread]:
    """Each thread of ``threads`` as an SDK ``Thread`` with all its items, in thread order."""
    for thread, _ in iter_threads_with(threads, batch_size=batch_size):
        yield thread


def iter_threads_with(
    threads: QuerySet[models.Thread], *fields: str, batch_size: int = BATCH_SIZE
) -> Iterator[tuple[Thread, tuple[Any, ...]]]:
    """``(SDK thread, values of fields)`` for each thread, ``batch_size`` threads at a time.

    Two queries per batch (threads, then all their items), so memory stays bounded by one
    batch of threads with their items.
    """
    rows = threads.order_by("pk").values_list("pk", "data", *fields)
    last = None
    while True:
        batch = list((rows.filter(pk__gt=last) if last is not None else rows)[:batch_size])
        if not batch:
            return
        last = batch[-1][0]
        items: dict[str, list[ThreadItem]] = {}
        for thread_id, data in (
            models.ThreadItem.objects.filter(thread_id__in=[r[0] for r in batch])
            .order_by(*ROW_ORDER)
            .values_list("thread_id", "data")
            .iterator(chunk_size=CHUNK_SIZE)
        ):
            items.setdefault(thread_id, []).append(ThreadItemAdapter.validate_python(data))
        for thread_id, data, *values in batch:
            metadata = ThreadMetadata.model_validate(data)
            page: Page[ThreadItem] = Page(data=items.get(thread_id, []), has_more=False, after=None)
            yield Thread(**dict(metadata), items=page), tuple(values)


def thread_json(thread: Thread) -> dict[str, Any]:
    return dump(thread)


def iter_json(threads: QuerySet[models.Thread], **extra: Any) -> Iterator[str]:
    """A JSON document ``{"format", "version", **extra, "threads": [...]}``, in chunks."""
    head = {"format": FORMAT, "version": VERSION, **extra}
    yield json.dumps(head, ensure_ascii=False)[:-1] + ', "threads": ['
    for n, thread in enumerate(iter_sdk_threads(threads)):
        yield ("," if n else "") + "\n" + json.dumps(thread_json(thread), ensure_ascii=False)
    yield "\n]}\n"


def load_threads(document: str | bytes | dict[str, Any]) -> list[Thread]:
    """The SDK threads of an export made by ``iter_json`` (validated, so a round trip)."""
    data: dict[str, Any] = document if isinstance(document, dict) else json.loads(document)
    if data.get("format") != FORMAT:
        raise ValueError(f"Not a {FORMAT} export (format={data.get('format')!r}).")
    return [Thread.model_validate(t) for t in data["threads"]]


# -- Markdown ------------------------------------------------------------------------
#
# Every line that starts a section ("# title", "### User · ...") is written here; text from
# users or the model never starts a line of its own. Multi-line user text is fenced (shown
# as-is), assistant text is quoted (its markdown still renders, inside the quote), and short
# values are put on one line with a leading block marker escaped. So a message containing
# "### Assistant · <date>" cannot pass for an assistant turn.

#: Characters that can open a Markdown block at the start of a line.
BLOCK_MARKERS = frozenset("#>-+*=_`~|<")


def _quote(text: str) -> str:
    """``text`` as a block quote: every line, blank ones included, starts with ``>``."""
    return "\n".join("> " + line if line else ">" for line in text.splitlines() or [""]) + "\n"


def _fence(value: Any, info: str = "") -> str:
    """``value`` in a code fence longer than any backtick run inside it (so it cannot close)."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{info}\n{text}\n{fence}\n"


def _inline(value: Any) -> str:
    """``value`` on one line that cannot open a block (heading, quote, list, fence)."""
    text = " ".join(str(value).split())
    if text[:1] in BLOCK_MARKERS:
        return "\\" + text
    return re.sub(r"^(\d+)([.)])", r"\1\\\2", text)


def item_markdown(item: ThreadItem) -> str:
    """One item as a Markdown section. User text is fenced as-is; it is not rendered here."""
    stamp = item.created_at.isoformat(timespec="seconds")
    if isinstance(item, UserMessageItem):
        text = "".join(
            f"@{p.text}" if isinstance(p, UserMessageTagContent) else p.text for p in item.content
        )
        out = f"### User · {stamp}\n\n"
        if item.quoted_text:
            out += "Quoting:\n\n" + _fence(item.quoted_text, "text") + "\n"
        if text:
            out += _fence(text, "text")
        for a in item.attachments:
            out += f"\n- Attachment: {_inline(a.name)} ({_inline(a.mime_type)}, `{_inline(a.id)}`)"
        return out + ("\n" if item.attachments else "")
    if isinstance(item, AssistantMessageItem):
        out = f"### Assistant · {stamp}\n\n" + _quote("\n\n".join(p.text for p in item.content))
        sources = [a.source for p in item.content for a in p.annotations]
        for s in sources:
            where = getattr(s, "url", None) or getattr(s, "filename", None) or getattr(s, "id", "")
            out += f"\n- Source: {_inline(s.title)} ({_inline(where)})"
        return out + ("\n" if sources else "")
    if isinstance(item, StructuredInputItem):
        out = f"### Structured input ({item.status}) · {stamp}\n\n"
        for q in item.inputs:
            if q.answer and q.answer.skipped or (q.answer is None and item.status == "skipped"):
                answer = "_skipped_"
            elif q.answer:
                answer = _inline(", ".join(q.answer.values))
            else:
                answer = "_no answer yet_"
            out += f"- **{_inline(q.question)}** {answer}\n"
        return out
    if isinstance(item, ClientToolCallItem):
        out = f"### Client tool call `{_inline(item.name)}` ({item.status}) · {stamp}\n\n"
        out += _fence(item.arguments)
        if item.output is not None:
            out += "\nOutput:\n\n" + _fence(item.output)
        return out
    if isinstance(item, WorkflowItem | TaskItem):
        tasks = item.workflow.tasks if isinstance(item, WorkflowItem) else [item.task]
        kind = "Workflow" if isinstance(item, WorkflowItem) else "Task"
        out = f"### {kind} · {stamp}\n\n"
        for t in tasks:
            title = getattr(t, "title", None) or t.type
            content = getattr(t, "content", None)
            out += f"- {_inline(title)}" + (f": {_inline(content)}" if content else "") + "\n"
        return out
    if isinstance(item, WidgetItem):
        if item.copy_text:
            body = _quote(item.copy_text)
        else:
            body = _fence(item.widget.model_dump(mode="json", exclude_none=True))
        return f"### Widget · {stamp}\n\n{body}"
    if isinstance(item, GeneratedImageItem):
        url = item.image.url if item.image else ""
        return f"### Generated image · {stamp}\n\n<{_inline(url)}>\n" if url else ""
    if isinstance(item, HiddenContextItem | SDKHiddenContextItem):
        return f"### Hidden context (not shown to the user) · {stamp}\n\n" + _fence(item.content)
    if isinstance(item, EndOfTurnItem):
        return ""
    # An item type of a newer SDK, unknown to this one (and to the type checker).
    return f"### {_inline(item.type)} · {stamp}\n\n" + _fence(  # type: ignore[unreachable]  # see above
        ThreadItemAdapter.dump_python(item, mode="json")
    )


def thread_markdown(thread: Thread, owner: str = "", scope: str = "") -> Iterator[str]:
    title = thread.title or thread.id
    yield f"# {_inline(title)}\n\n"
    yield f"- Thread: `{_inline(thread.id)}`\n"
    if owner:
        yield f"- Owner: {_inline(owner)}\n"
    if scope:
        yield f"- Scope: `{_inline(scope)}`\n"
    yield f"- Created: {thread.created_at.isoformat(timespec='seconds')}\n"
    yield f"- Status: {thread.status.type}\n\n"
    for item in thread.items.data:
        section = item_markdown(item)
        if section:
            yield section + "\n"


def iter_markdown(threads: QuerySet[models.Thread]) -> Iterator[str]:
    """Every thread as Markdown, separated by rules."""
    owner_field = f"owner__{get_user_model().USERNAME_FIELD}"
    for n, (thread, (owner, scope)) in enumerate(iter_threads_with(threads, owner_field, "scope")):
        if n:
            yield "\n---\n\n"
        yield from thread_markdown(thread, str(owner), scope)


def iter_items(items: QuerySet[models.ThreadItem]) -> Iterator[ThreadItem]:
    """SDK items of ``items``, grouped by thread and in thread order, read in chunks."""
    rows = items.order_by("thread_id", *ROW_ORDER).values_list("data", flat=True)
    for data in rows.iterator(chunk_size=CHUNK_SIZE):
        yield ThreadItemAdapter.validate_python(data)


def items_markdown(items: Iterable[ThreadItem]) -> Iterator[str]:
    """Items of several threads (e.g. one user's messages in others' threads), per thread."""
    thread_id = None
    for item in items:
        if item.thread_id != thread_id:
            thread_id = item.thread_id
            yield f"## Thread `{_inline(thread_id)}`\n\n"
        section = item_markdown(item)
        if section:
            yield section + "\n"


def attachments_markdown(attachments: QuerySet[models.Attachment]) -> Iterator[str]:
    """One line per ``Attachment`` row: name, type, size, id, thread, when."""
    rows = attachments.order_by("created_at", "pk").values_list(
        "id", "data", "mime_type", "size", "thread_id", "created_at"
    )
    for pk, data, mime_type, size, thread_id, created_at in rows.iterator(chunk_size=CHUNK_SIZE):
        name = data.get("name") if isinstance(data, dict) else None
        where = f"thread `{_inline(thread_id)}`" if thread_id else "not attached"
        size_text = "size unknown" if size is None else f"{size} bytes"
        yield (
            f"- {_inline(name or '')} ({_inline(mime_type)}, {size_text}, `{_inline(pk)}`, "
            f"{where}, {created_at.isoformat(timespec='seconds')})\n"
        )


def feedback_markdown(feedback: QuerySet[models.Feedback]) -> Iterator[str]:
    """One line per ``Feedback`` row: kind, item, thread, when."""
    rows = feedback.order_by("created_at", "pk").values_list(
        "kind", "item_id", "thread_id", "created_at"
    )
    for kind, item_id, thread_id, created_at in rows.iterator(chunk_size=CHUNK_SIZE):
        yield (
            f"- {kind} on item `{_inline(item_id)}` in thread `{_inline(thread_id)}` "
            f"({created_at.isoformat(timespec='seconds')})\n"
        )


def join(chunks: Iterable[str]) -> str:
    return "".join(chunks)
