from django.contrib import admin
from django.urls import include, path

from tests.testapp.throttles import CappedChatKitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("chatkit/", include("chatkit_django.urls")),
    path("chatkit-capped/", CappedChatKitView.as_view()),
]
