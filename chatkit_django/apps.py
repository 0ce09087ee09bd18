from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ChatKitConfig(AppConfig):
    name = "chatkit_django"
    label = "chatkit_django"
    verbose_name = _("ChatKit")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chatkit_django import checks, signals  # noqa: F401 - registers checks and receivers
