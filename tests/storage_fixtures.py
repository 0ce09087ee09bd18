"""Attachment storages for tests: a FileSystemStorage in a temporary directory, and
django-storages' S3Storage against moto's S3 server running on 127.0.0.1.

``attachment_storage`` is parametrised over both, so a test taking it runs on each.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.live_server import free_port

_buckets = itertools.count()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server on a loopback port, for the whole test session."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")}
    # Keep the developer's AWS configuration out of the tests (as django-storages' tox.ini).
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent"
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def s3_options(endpoint: str, bucket: str) -> dict[str, Any]:
    return {
        "bucket_name": bucket,
        "endpoint_url": endpoint,
        "access_key": "testing",
        "secret_key": "testing",
        "region_name": "us-east-1",
        "addressing_style": "path",
        "signature_version": "s3v4",
        "file_overwrite": False,
    }


@pytest.fixture
def s3_storage_settings(s3_server: str) -> dict[str, Any]:
    """A fresh bucket on the moto server, as a ``STORAGES`` entry."""
    import boto3

    bucket = f"chatkit-test-{os.getpid()}-{next(_buckets)}"
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": s3_options(s3_server, bucket)}


@pytest.fixture(params=["filesystem", "s3"])
def attachment_storage(request: pytest.FixtureRequest, settings: Any, tmp_path: Any) -> Any:
    """The ``chatkit`` storage alias, on local disk or on S3 (moto); returns the storage."""
    if request.param == "s3":
        entry = request.getfixturevalue("s3_storage_settings")
    else:
        entry = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        }
    settings.STORAGES = {**settings.STORAGES, "chatkit": entry}
    from chatkit_django.attachments import get_attachment_storage

    return get_attachment_storage()


@pytest.fixture
def failing_storage(settings: Any, tmp_path: Any) -> Any:
    """A ``chatkit`` storage that fails mid-write; returns the storage."""
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "tests.testapp.storage.FailingStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    from chatkit_django.attachments import get_attachment_storage

    return get_attachment_storage()


def stored_names(storage: Any, prefix: str = "chatkit") -> list[str]:
    """Every file name under ``prefix`` on ``storage``."""
    try:
        dirs, files = storage.listdir(prefix)
    except FileNotFoundError:
        return []
    names = [f"{prefix}/{f}" for f in files]
    for d in dirs:
        names += stored_names(storage, f"{prefix}/{d}")
    return sorted(names)
