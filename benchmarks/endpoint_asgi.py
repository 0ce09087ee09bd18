"""The Django side of the benchmark: the project's ASGI application, nothing else."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.endpoint_settings")
application = get_asgi_application()
