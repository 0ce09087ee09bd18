from django.contrib import admin

from example_project.demo.models import Article


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "published"]
    list_filter = ["published"]
    search_fields = ["title", "summary"]
