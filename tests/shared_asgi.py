"""The test project served by ``chatkit_django.asgi``: requests share a few threads."""

import os

from chatkit_django.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
application = get_asgi_application()
