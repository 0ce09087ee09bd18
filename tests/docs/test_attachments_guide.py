"""docs/guides/attachments.md stays true: its settings pass the system checks and its error
table matches the exceptions the views raise."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.exceptions import APIException

from chatkit_django import checks as chatkit_checks
from chatkit_django import exceptions
from tests import ROOT

GUIDE = ROOT / "docs" / "guides" / "attachments.md"


def settings_blocks() -> list[str]:
    blocks = re.findall(r"```python\n(# settings.py\n.*?)```", GUIDE.read_text(), re.DOTALL)
    assert len(blocks) == 2
    return blocks


@pytest.mark.parametrize("block", settings_blocks(), ids=["local", "s3"])
def test_settings_snippets_pass_the_checks(block: str, settings: Any) -> None:
    namespace: dict[str, Any] = {}
    exec(block, namespace)  # noqa: S102 - the guide's own settings snippet
    # The guide's server class lives in an imaginary project; ours stands in for it.
    chatkit = {**namespace.get("CHATKIT", {}), "SERVER_CLASS": "tests.testapp.server.EchoServer"}
    with override_settings(STORAGES=namespace["STORAGES"], CHATKIT=chatkit):
        from chatkit_django.attachments import get_attachment_storage

        assert type(get_attachment_storage()).__name__ in {"FileSystemStorage", "S3Storage"}
        found = [
            *chatkit_checks.check_settings(),
            *chatkit_checks.check_deployment(),
            *chatkit_checks.check_security(),
        ]
    assert found == []


def test_error_table_matches_the_exceptions() -> None:
    rows = re.findall(r"\| (\d{3}) `(\w+)`", GUIDE.read_text())
    assert len(rows) >= 7
    by_code = {
        cls.default_code: cls.status_code
        for cls in vars(exceptions).values()
        if isinstance(cls, type) and issubclass(cls, APIException)
    }
    for status, code in rows:
        assert by_code[code] == int(status), code


def test_guide_is_in_the_nav() -> None:
    mkdocs = (GUIDE.parent.parent.parent / "mkdocs.yml").read_text()
    assert "guides/attachments.md" in mkdocs
