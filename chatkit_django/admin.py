"""Django admin for ChatKit threads, attachments and feedback.

Threads are written by the ChatKit store, never by hand: every page here is read-only
(``has_change_permission`` is ``False``), so no form ever offers the stored JSON for
editing. The thread list gets its counts and previews from correlated subqueries, so a
page of the list costs the same number of queries whatever its length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.core.paginator import Paginator
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.defaultfilters import filesizeformat, truncatechars
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from chatkit_django import export
from chatkit_django._internal.ordering import ROW_ORDER
from chatkit_django.deletion import delete_thread_queryset, delete_threads
from chatkit_django.models import Attachment, Feedback, Thread, ThreadItem
from chatkit_django.transcript import TranscriptBuilder, attachment_content_url

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    ModelAdmin = admin.ModelAdmin[Any]  # generic for the checker only

    class ThreadCounts(TypedDict):
        item_count: int
        attachment_count: int
else:
    ModelAdmin = admin.ModelAdmin


def user_search_fields(model: Any, relation: str) -> list[str]:
    """Search lookups for the user behind ``relation``: its ``USERNAME_FIELD`` and email field.

    Read from the user model, so a custom user without ``username`` or ``email`` still
    searches (by what it has) instead of raising ``FieldError``.
    """
    user_model = model._meta.get_field(relation).related_model
    lookups = []
    for name in dict.fromkeys([user_model.USERNAME_FIELD, user_model.get_email_field_name()]):
        try:
            field = user_model._meta.get_field(name)
        except FieldDoesNotExist:
            continue
        if field.concrete and not field.is_relation:
            lookups.append(f"{relation}__{name}")
    return lookups


def _count(model: Any, **filters: Any) -> Coalesce:
    """``COUNT(*)`` of ``model`` rows per thread, as a correlated subquery.

    Subqueries rather than ``Count("items")``: two joined counts multiply each other, and a
    GROUP BY over the whole thread row is slower than per-row index lookups.
    """
    rows = (
        model.objects.filter(thread=OuterRef("pk"), **filters)
        .order_by()
        .values("thread")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


class StatusFilter(admin.SimpleListFilter):
    title = _("status")
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("active", _("active")), ("locked", _("locked")), ("closed", _("closed"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> QuerySet[Thread]:
        if self.value() in {"active", "locked", "closed"}:
            return queryset.filter(status=self.value())
        return queryset


class _ExistsFilter(admin.SimpleListFilter):
    """A yes/no filter on ``EXISTS`` of related rows (no join, so no duplicate threads)."""

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def related(self) -> QuerySet[Any]:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> QuerySet[Thread]:
        if self.value() == "yes":
            return queryset.filter(Exists(self.related()))
        if self.value() == "no":
            return queryset.exclude(Exists(self.related()))
        return queryset


class HasAttachmentsFilter(_ExistsFilter):
    title = _("has attachments")
    parameter_name = "has_attachments"

    def related(self) -> QuerySet[Any]:
        return Attachment.objects.filter(thread=OuterRef("pk"))


class HasNegativeFeedbackFilter(_ExistsFilter):
    title = _("has negative feedback")
    parameter_name = "negative_feedback"

    def related(self) -> QuerySet[Any]:
        return Feedback.objects.filter(thread=OuterRef("pk"), kind=Feedback.Kind.NEGATIVE)


class ReadOnlyAdmin(ModelAdmin):
    """Rows written by the ChatKit store: viewable and deletable, never edited or added here."""

    #: Relations to the user model whose username and email the search box also matches.
    search_user_fields: list[str] = []

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        own = list(super().get_search_fields(request))
        return own + [
            lookup
            for relation in self.search_user_fields
            for lookup in user_search_fields(self.model, relation)
        ]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Thread)
class ThreadAdmin(ReadOnlyAdmin):
    """Find, read, export and delete conversations."""

    list_display = [
        "display_title",
        "owner",
        "item_count",
        "attachment_count",
        "latest_feedback",
        "status",
        "created_at",
        "updated_at",
    ]
    list_select_related = ["owner"]
    list_filter = [
        "created_at",
        "updated_at",
        ("owner", admin.RelatedOnlyFieldListFilter),
        # The scopes (workspaces, agents, tenants: DjangoStore.get_scope) threads are in.
        ("scope", admin.AllValuesFieldListFilter),
        StatusFilter,
        HasAttachmentsFilter,
        HasNegativeFeedbackFilter,
    ]
    # items__preview goes through Django's duplicate-free EXISTS search.
    search_fields = ["title", "items__preview"]
    search_user_fields = ["owner"]
    date_hierarchy = "created_at"
    ordering = ["-updated_at"]
    show_full_result_count = False
    fields = ["id", "title", "owner", "scope", "status", "created_at", "updated_at"]
    readonly_fields = fields  # type: ignore[assignment]  # the same names; the stubs type them apart
    change_form_template = "admin/chatkit_django/thread/change_form.html"
    transcript_template = "admin/chatkit_django/thread/transcript.html"
    transcript_builder_class = TranscriptBuilder
    #: Items per transcript page on the change view.
    transcript_per_page = 50
    preview_chars = 80

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        first_message = (
            ThreadItem.objects.filter(thread=OuterRef("pk"), type="user_message")
            .order_by(*ROW_ORDER)
            .values("preview")[:1]
        )
        latest_feedback = (
            Feedback.objects.filter(thread=OuterRef("pk")).order_by("-created_at", "-pk")
        ).values("kind")[:1]
        threads: QuerySet[Thread] = super().get_queryset(request)
        return threads.defer("data").annotate(
            item_count=_count(ThreadItem),
            attachment_count=_count(Attachment),
            first_message=Subquery(first_message),
            latest_feedback=Subquery(latest_feedback),
        )

    @admin.display(description=_("title"), ordering="title")
    def display_title(self, obj: Thread) -> str:
        if obj.title:
            return obj.title
        preview = getattr(obj, "first_message", None)
        if preview:
            return "“" + truncatechars(" ".join(preview.split()), self.preview_chars) + "”"
        return obj.id

    @admin.display(description=_("items"), ordering="item_count")
    def item_count(self, obj: WithAnnotations[Thread, ThreadCounts]) -> int:
        return obj.item_count

    @admin.display(description=_("attachments"), ordering="attachment_count")
    def attachment_count(self, obj: WithAnnotations[Thread, ThreadCounts]) -> int:
        return obj.attachment_count

    @admin.display(description=_("latest feedback"), ordering="latest_feedback")
    def latest_feedback(self, obj: Thread) -> str:
        kind = getattr(obj, "latest_feedback", None)
        if kind == Feedback.Kind.NEGATIVE:
            return format_html('<span style="color:#b91c1c">▼ {}</span>', _("negative"))
        if kind == Feedback.Kind.POSITIVE:
            return format_html('<span style="color:#15803d">▲ {}</span>', _("positive"))
        return "—"

    # -- the transcript ----------------------------------------------------------

    def get_transcript_builder(
        self, request: HttpRequest, items: Sequence[ThreadItem]
    ) -> TranscriptBuilder:
        """A builder that knows the stored attachments and feedback of ``items``."""
        attachment_ids = {
            a.get("id")
            for item in items
            if item.type == "user_message"
            for a in item.data.get("attachments", [])
            if isinstance(a, dict)
        }
        rows = Attachment.objects.filter(pk__in=attachment_ids).only("id", "size", "file")
        attachments = {row.pk: row for row in rows} if attachment_ids else {}
        feedback: dict[str, list[str]] = {}
        for item_id, kind in (
            Feedback.objects.filter(item__in=[i.pk for i in items])
            .order_by("created_at", "pk")
            .values_list("item_id", "kind")
        ):
            feedback.setdefault(item_id, []).append(kind)
        return self.transcript_builder_class(attachments=attachments, feedback=feedback)

    def get_transcript(self, request: HttpRequest, obj: Thread) -> dict[str, Any]:
        """Template context of one page of ``obj``'s items, oldest first."""
        username = get_user_model().USERNAME_FIELD
        items = (
            ThreadItem.objects.filter(thread=obj)
            .annotate(author_name=F(f"author__{username}"))
            .order_by(*ROW_ORDER)
        )
        paginator = Paginator(items, self.transcript_per_page)
        page = paginator.get_page(request.GET.get("page"))
        rows = list(page.object_list)
        builder = self.get_transcript_builder(request, rows)
        entries = builder.build(rows)
        for entry, row in zip(entries, rows, strict=True):
            # Messages someone other than the owner sent (with change access) say who.
            if row.author_id is not None and row.author_id != obj.owner_id:
                entry["sent_by"] = row.author_name  # type: ignore[attr-defined]  # annotated above
        return {
            "template": self.transcript_template,
            "entries": entries,
            "page": page,
            "count": paginator.count,
        }

    # -- actions -------------------------------------------------------------------

    actions = ["export_json", "export_markdown"]

    def export_response(
        self, chunks: Any, extension: str, content_type: str
    ) -> StreamingHttpResponse:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(chunks, content_type=content_type)
        response["Content-Disposition"] = content_disposition_header(
            as_attachment=True, filename=f"chatkit-threads-{stamp}.{extension}"
        )
        return response

    @admin.action(description=_("Export selected threads as JSON"), permissions=["view"])
    def export_json(
        self, request: HttpRequest, queryset: QuerySet[Thread]
    ) -> StreamingHttpResponse:
        return self.export_response(
            export.iter_json(self.model.objects.filter(pk__in=queryset.values("pk"))),
            "json",
            "application/json; charset=utf-8",
        )

    @admin.action(description=_("Export selected threads as Markdown"), permissions=["view"])
    def export_markdown(
        self, request: HttpRequest, queryset: QuerySet[Thread]
    ) -> StreamingHttpResponse:
        return self.export_response(
            export.iter_markdown(self.model.objects.filter(pk__in=queryset.values("pk"))),
            "md",
            "text/markdown; charset=utf-8",
        )

    # -- deletion --------------------------------------------------------------------

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """A summary instead of Django's list of every related row.

        Django's confirmation page would list (and load) every item of every thread, and ask
        for delete permission on items, attachments and feedback. They are part of the
        thread: ``delete_thread`` is the permission that matters.
        """
        ids = [obj.pk for obj in objs]
        to_delete = [f"{capfirst(Thread._meta.verbose_name)}: {obj}" for obj in objs]
        model_count = {
            Thread._meta.verbose_name_plural: len(ids),
            ThreadItem._meta.verbose_name_plural: ThreadItem.objects.filter(
                thread_id__in=ids
            ).count(),
            Attachment._meta.verbose_name_plural: Attachment.objects.filter(
                thread_id__in=ids
            ).count(),
            Feedback._meta.verbose_name_plural: Feedback.objects.filter(thread_id__in=ids).count(),
        }
        return to_delete, {str(k): v for k, v in model_count.items() if v}, set(), []

    def delete_model(self, request: HttpRequest, obj: Thread) -> None:
        delete_threads([obj.pk], user=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Thread]) -> None:
        delete_thread_queryset(
            self.model.objects.filter(pk__in=queryset.values("pk")), user=request.user
        )

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,  # noqa: FBT001, FBT002 - Django's signature
        change: bool = False,  # noqa: FBT001, FBT002
        form_url: str = "",
        obj: Thread | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context["transcript"] = self.get_transcript(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdmin):
    """Uploaded files: who, where, what; images with a thumbnail."""

    list_display = [
        "thumbnail",
        "name",
        "owner",
        "thread",
        "mime_type",
        "display_size",
        "created_at",
    ]
    list_select_related = ["owner", "thread"]
    list_filter = ["type", ("scope", admin.AllValuesFieldListFilter), "created_at"]
    search_fields = ["id", "name", "thread__id"]
    search_user_fields = ["owner"]
    fields = [
        "thumbnail",
        "id",
        "name",
        "owner",
        "thread",
        "scope",
        "type",
        "mime_type",
        "display_size",
        "created_at",
        "uploaded_at",
    ]
    readonly_fields = fields  # type: ignore[assignment]  # the same names; the stubs type them apart
    ordering = ["-created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("data", "thread__data")

    @admin.display(description=_("size"), ordering="size")
    def display_size(self, obj: Attachment) -> str:
        return filesizeformat(obj.size) if obj.size is not None else "—"

    @admin.display(description=_("file"))
    def thumbnail(self, obj: Attachment) -> str:
        url = attachment_content_url(obj.pk) if obj.file else None
        if url is None:
            return "—"
        if obj.type == "image":
            return format_html(
                '<a href="{}"><img src="{}" alt="{}" loading="lazy" '
                'style="max-width:64px;max-height:64px"></a>',
                url,
                url,
                obj.name,
            )
        return format_html('<a href="{}" download="{}">{}</a>', url, obj.name, _("download"))


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    """Thumbs up/down given on items."""

    list_display = ["kind", "item", "thread", "user", "created_at"]
    list_select_related = ["user", "thread", "item"]
    list_filter = ["kind", "created_at"]
    search_fields = ["thread__id", "thread__title", "item__id"]
    search_user_fields = ["user"]
    fields = ["kind", "item", "thread", "user", "created_at"]
    readonly_fields = fields  # type: ignore[assignment]  # the same names; the stubs type them apart
    ordering = ["-created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("thread__data", "item__data")
