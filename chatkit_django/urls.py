"""``path("chatkit/", include("chatkit_django.urls"))``.

Route names (namespace ``chatkit``): ``endpoint``, ``upload``, ``upload-target``,
``attachment-content``, ``entity-search``, ``entity-preview``.
"""

from django.urls import path  # noqa: F401

app_name = "chatkit"

urlpatterns: list = []
