from django.contrib import admin
from django.urls import include, path

from example_project.demo.views import index, welcome

urlpatterns = [
    path("admin/", admin.site.urls),
    path("chatkit/", include("chatkit_django.urls")),
    path("welcome/", welcome, name="welcome"),
    path("", index, name="index"),
]
