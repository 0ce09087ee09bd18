"""ASGI app routing the endpoint through Channels: ``ChatKitConsumer``, which reads the session
cookie itself (no ``AuthMiddlewareStack``: its database errors would be Channels' 500s)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path, re_path

from chatkit_django.consumers import ChatKitConsumer

# --8<-- [start:router]
application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                path("chatkit/", ChatKitConsumer.as_asgi()),
                re_path(r"", django_application),
            ]
        )
    }
)
# --8<-- [end:router]
