from django.contrib import admin
from django.urls import include, path

from example_project.demo.views import index

urlpatterns = [
    path("admin/", admin.site.urls),
    path("chatkit/", include("chatkit_django.urls")),
    path("", index, name="index"),
]
