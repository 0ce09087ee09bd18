"""``path("chatkit/", include("chatkit_django.urls"))``.

Route names (namespace ``chatkit``): ``endpoint``, ``upload``, ``upload-target``,
``attachment-content``, ``entity-search``, ``entity-preview``.
"""

from django.urls import URLPattern, path

from chatkit_django import uploads
from chatkit_django.views import ChatKitView, EntityPreviewView, EntitySearchView

app_name = "chatkit"

urlpatterns: list[URLPattern] = [
    path("", ChatKitView.as_view(), name="endpoint"),
    path("upload/", uploads.DirectUploadView.as_view(), name="upload"),
    path(
        "attachments/<str:attachment_id>/upload/",
        uploads.UploadTargetView.as_view(),
        name="upload-target",
    ),
    path(
        "attachments/<str:attachment_id>/content/",
        uploads.AttachmentContentView.as_view(),
        name="attachment-content",
    ),
    path("entities/search/", EntitySearchView.as_view(), name="entity-search"),
    path("entities/preview/", EntityPreviewView.as_view(), name="entity-preview"),
]
