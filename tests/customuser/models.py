"""A user model with neither ``username`` nor ``email``, for ``tests/customuser/settings.py``."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models


class MemberManager(BaseUserManager["Member"]):
    def create_user(self, handle: str, password: str | None = None, **fields: Any) -> Member:
        member = self.model(handle=handle, **fields)
        member.set_password(password)
        member.save(using=self._db)
        return member

    def create_superuser(self, handle: str, password: str | None = None, **fields: Any) -> Member:
        return self.create_user(handle, password, is_staff=True, is_superuser=True, **fields)


class Member(AbstractBaseUser, PermissionsMixin):
    id = models.AutoField(primary_key=True)
    handle = models.CharField(max_length=50, unique=True)
    contact = models.EmailField(blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    USERNAME_FIELD = "handle"
    EMAIL_FIELD = "contact"

    objects = MemberManager()
