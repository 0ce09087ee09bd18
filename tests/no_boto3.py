"""``without_boto3``: this process as on a plain ``pip install chatkit-django`` (no extras).

django-storages is a dependency, boto3 is not (the ``s3`` extra). Without boto3, importing
``storages.backends.s3`` raises ImproperlyConfigured, not ImportError. The fixture hides boto3
from imports and forgets the modules already imported, so django-storages meets exactly that.
tests/docs/test_quickstart.py checks the real thing in a fresh virtualenv.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from importlib.abc import MetaPathFinder
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

HIDDEN = ("boto3", "botocore", "s3transfer")


class HideBoto3(MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


def forgotten(name: str) -> bool:
    return name.partition(".")[0] in HIDDEN or name.startswith("storages.backends.s3")


@pytest.fixture
def without_boto3(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [name for name in sys.modules if forgotten(name)]:
        monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setattr(sys, "meta_path", [HideBoto3(), *sys.meta_path])
    with pytest.raises(ImproperlyConfigured, match="Could not load Boto3's S3 bindings"):
        importlib.import_module("storages.backends.s3")
    yield
    assert not [name for name in sys.modules if forgotten(name)]
