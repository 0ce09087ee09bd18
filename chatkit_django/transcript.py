"""Stored SDK items turned into template context for the admin's read-only transcript.

Each item becomes a plain dict (an "entry") with a ``template`` to include, so the admin
template stays free of SDK knowledge and a project can override one item type's template
without touching the others. Everything user- or model-supplied stays a plain string and is
escaped by the template; the one exception is assistant markdown, rendered here and
sanitised with nh3 (no raw HTML, only http/https/mailto links).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import markdown
import nh3
from chatkit.types import (
    AssistantMessageItem,
    ClientToolCallItem,
    CustomTask,
    DurationSummary,
    EndOfTurnItem,
    EntitySource,
    FileSource,
    FileTask,
    GeneratedImageItem,
    HiddenContextItem,
    ImageAttachment,
    SDKHiddenContextItem,
    SearchTask,
    StructuredInputItem,
    StructuredInputMultipleChoice,
    TaskItem,
    ThoughtTask,
    ThreadItem,
    URLSource,
    UserMessageItem,
    UserMessageTagContent,
    WidgetItem,
    WorkflowItem,
)
from django.urls import NoReverseMatch, reverse
from django.utils.safestring import SafeString, mark_safe
from pydantic import ValidationError

from chatkit_django.store import ThreadItemAdapter

TEMPLATE_DIR = "admin/chatkit_django/thread/items"

#: Tags assistant markdown may produce; anything else is stripped (its text kept).
MARKDOWN_TAGS = frozenset(
    {
        "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "a",
        "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
        "table", "thead", "tbody", "tr", "th", "td", "del",
    }
)  # fmt: skip
SAFE_URL_SCHEMES = frozenset({"http", "https", "mailto"})


def render_markdown(text: str) -> SafeString:
    """Assistant markdown as sanitised HTML.

    Raw HTML in the source is shown as text (the HTML block and inline patterns are
    removed), and nh3 then keeps only ``MARKDOWN_TAGS`` and http/https/mailto links, so
    neither ``<script>`` nor ``javascript:`` survives. Images are dropped on purpose: an
    admin page should not fetch third-party URLs chosen by a model.
    """
    md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists"])
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    html = md.convert(text)
    cleaned = nh3.clean(
        html,
        tags=set(MARKDOWN_TAGS),
        attributes={"a": {"href", "title"}},
        url_schemes=set(SAFE_URL_SCHEMES),
        link_rel="noopener noreferrer nofollow",
    )
    # Safe: nh3 has just sanitised it with an allow-list.
    return mark_safe(cleaned)


def safe_url(url: str | None) -> str | None:
    """``url`` if it is http(s), else ``None``: never put a ``javascript:`` URL in an href."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url if scheme in {"http", "https"} else None


def attachment_content_url(attachment_id: str) -> str | None:
    """The access-checked content view of an attachment, if the project routes it."""
    try:
        return reverse("chatkit:attachment-content", kwargs={"attachment_id": attachment_id})
    except NoReverseMatch:
        return None


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def widget_texts(node: Any, depth: int = 0) -> list[dict[str, Any]]:
    """The readable strings of a widget tree (``value``, ``label``, ``title``...), in order."""
    lines: list[dict[str, Any]] = []
    if isinstance(node, Mapping):
        for key in ("title", "value", "label", "text", "placeholder"):
            value = node.get(key)
            if isinstance(value, str) and value:
                lines.append({"type": node.get("type", ""), "text": value, "depth": depth})
        for key in ("children", "header", "footer"):
            child = node.get(key)
            if child is not None:
                lines.extend(widget_texts(child, depth + 1))
    elif isinstance(node, list):
        for child in node:
            lines.extend(widget_texts(child, depth))
    return lines


def source_entry(source: URLSource | FileSource | EntitySource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": source.type,
        "title": source.title,
        "description": source.description,
        "url": None,
        "detail": "",
    }
    if isinstance(source, URLSource):
        entry["url"] = safe_url(source.url)
        entry["detail"] = source.url if entry["url"] is None else ""
    elif isinstance(source, FileSource):
        entry["detail"] = source.filename
    else:
        entry["detail"] = source.label or source.id
    return entry


def task_entry(task: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": task.type,
        "title": getattr(task, "title", None) or "",
        "status": task.status_indicator,
        "content": "",
        "queries": [],
        "sources": [],
    }
    if isinstance(task, CustomTask | ThoughtTask):
        entry["content"] = task.content or ""
    if isinstance(task, SearchTask):
        entry["queries"] = list(task.queries)
        entry["sources"] = [source_entry(s) for s in task.sources]
    if isinstance(task, FileTask):
        entry["sources"] = [source_entry(s) for s in task.sources]
    return entry


def attachment_entry(attachment: Any, rows: Mapping[str, Any]) -> dict[str, Any]:
    """A chip for one attachment of a user message; ``rows`` are the stored Attachment rows."""
    row = rows.get(attachment.id)
    url = attachment_content_url(attachment.id) if row is not None else None
    return {
        "id": attachment.id,
        "name": attachment.name,
        "mime_type": attachment.mime_type,
        "is_image": isinstance(attachment, ImageAttachment),
        "url": url,
        "size": getattr(row, "size", None),
        "missing": row is None,
    }


class TranscriptBuilder:
    """Builds transcript entries; subclass and override ``<type>_context`` to change one."""

    template_dir = TEMPLATE_DIR

    def __init__(
        self,
        *,
        attachments: Mapping[str, Any] | None = None,
        feedback: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.attachments = attachments or {}
        self.feedback = feedback or {}

    def build(self, rows: Iterable[Any]) -> list[dict[str, Any]]:
        """One entry per row of ``ThreadItem`` (anything with ``id``, ``type`` and ``data``)."""
        return [self.entry(row) for row in rows]

    def entry(self, row: Any) -> dict[str, Any]:
        data = row.data
        entry: dict[str, Any] = {
            "id": row.id,
            "type": row.type,
            "created_at": getattr(row, "created_at", None),
            "json": pretty_json(data),
            "hidden": False,
            "feedback": self.feedback.get(row.id, []),
        }
        try:
            item = ThreadItemAdapter.validate_python(data)
        except ValidationError as e:
            entry.update(template=f"{self.template_dir}/invalid.html", error=str(e))
            return entry
        method = getattr(self, f"{item.type}_context", None)
        if method is None:
            entry["template"] = f"{self.template_dir}/unknown.html"
            return entry
        entry["template"] = f"{self.template_dir}/{item.type}.html"
        entry.update(method(item))
        return entry

    def user_message_context(self, item: UserMessageItem) -> dict[str, Any]:
        parts = [
            {"kind": "tag", "text": part.text, "group": part.group or "", "id": part.id}
            if isinstance(part, UserMessageTagContent)
            else {"kind": "text", "text": part.text}
            for part in item.content
        ]
        options = item.inference_options
        return {
            "parts": parts,
            "quoted_text": item.quoted_text or "",
            "attachments": [attachment_entry(a, self.attachments) for a in item.attachments],
            "model": options.model or "",
            "tool_choice": options.tool_choice.id if options.tool_choice else "",
        }

    def assistant_message_context(self, item: AssistantMessageItem) -> dict[str, Any]:
        return {
            "html": [render_markdown(part.text) for part in item.content],
            "annotations": [
                {**source_entry(a.source), "index": a.index}
                for part in item.content
                for a in part.annotations
            ],
        }

    def client_tool_call_context(self, item: ClientToolCallItem) -> dict[str, Any]:
        return {
            "name": item.name,
            "call_id": item.call_id,
            "status": item.status,
            "arguments": pretty_json(item.arguments),
            "output": None if item.output is None else pretty_json(item.output),
        }

    def widget_context(self, item: WidgetItem) -> dict[str, Any]:
        widget = item.widget.model_dump(mode="json", exclude_none=True)
        return {
            "widget_type": widget.get("type", ""),
            "copy_text": item.copy_text or "",
            "texts": widget_texts(widget),
        }

    def generated_image_context(self, item: GeneratedImageItem) -> dict[str, Any]:
        url = item.image.url if item.image else None
        return {"image_url": safe_url(url), "image_ref": url or ""}

    def structured_input_context(self, item: StructuredInputItem) -> dict[str, Any]:
        inputs = []
        for question in item.inputs:
            answer = question.answer
            inputs.append(
                {
                    "id": question.id,
                    "question": question.question,
                    "kind": question.type,
                    "options": [o.value for o in question.options]
                    if isinstance(question, StructuredInputMultipleChoice)
                    else [],
                    "description": getattr(question, "description", None) or "",
                    "values": list(answer.values) if answer else [],
                    "skipped": bool(answer and answer.skipped) or item.status == "skipped",
                    "answered": answer is not None,
                }
            )
        return {"status": item.status, "inputs": inputs}

    def workflow_context(self, item: WorkflowItem) -> dict[str, Any]:
        summary = item.workflow.summary
        if isinstance(summary, DurationSummary):
            summary_text = f"{summary.duration} s"
        else:
            summary_text = summary.title if summary else ""
        return {
            "workflow_type": item.workflow.type,
            "summary": summary_text,
            "tasks": [task_entry(t) for t in item.workflow.tasks],
        }

    def task_context(self, item: TaskItem) -> dict[str, Any]:
        return {"task": task_entry(item.task)}

    def hidden_context_item_context(self, item: HiddenContextItem) -> dict[str, Any]:
        content = item.content
        return {
            "hidden": True,
            "content": content if isinstance(content, str) else pretty_json(content),
        }

    def sdk_hidden_context_context(self, item: SDKHiddenContextItem) -> dict[str, Any]:
        return {"hidden": True, "content": item.content}

    def end_of_turn_context(self, item: EndOfTurnItem) -> dict[str, Any]:
        return {}


def item_types() -> list[str]:
    """Every item ``type`` the SDK defines (for tests and filters)."""
    from typing import get_args

    union = get_args(ThreadItem)[0]
    return [cls.model_fields["type"].default for cls in get_args(union)]
