"""The demo's @-mention source: published articles, plus the user's own drafts."""

from typing import Any

from django.db import models

from chatkit_django.entities import EntitySource
from example_project.demo.models import Article


class ArticleSource(EntitySource):
    name = "article"
    model = Article
    search_fields = ("title", "summary")
    ordering = ("title", "pk")
    group = "Articles"
    icon = "document"

    def get_queryset(self, user: Any) -> models.QuerySet[Article]:
        if not user.is_authenticated:  # with CHATKIT['ALLOW_ANONYMOUS']
            return Article.objects.filter(published=True)
        return Article.objects.filter(models.Q(published=True) | models.Q(author=user))

    def get_data(self, obj: Article) -> dict[str, str]:
        return {"published": "yes" if obj.published else "draft"}

    def summarize(self, obj: Article) -> str:
        return obj.summary
