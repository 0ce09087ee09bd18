from django.urls import include, path

urlpatterns = [path("chatkit/", include("chatkit_django.urls"))]
