"""The Django side of the benchmark: the project's ASGI application, nothing else.

``BENCH_ASGI=django`` serves it with Django's own handler instead of chatkit_django's.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.endpoint_settings")

if os.environ.get("BENCH_ASGI") == "django":
    from django.core.asgi import get_asgi_application
else:
    from chatkit_django.asgi import get_asgi_application

application = get_asgi_application()
