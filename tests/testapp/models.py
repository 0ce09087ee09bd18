from django.conf import settings
from django.db import models


class Note(models.Model):
    """A per-user model that tests mention as an entity."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return self.title
