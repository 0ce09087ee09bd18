"""Each system check id fires for its misconfiguration, with its message; ids are unique."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from chatkit_django import checks as chatkit_checks
from chatkit_django.conf import DEFAULTS
from tests import ROOT

ECHO = "tests.testapp.server.EchoServer"


def run_all() -> list[checks.CheckMessage]:
    return [
        *chatkit_checks.check_settings(),
        *chatkit_checks.check_deployment(),
        *chatkit_checks.check_security(),
    ]


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id for m in messages]


def only(messages: list[checks.CheckMessage]) -> checks.CheckMessage:
    assert len(messages) == 1, messages
    return messages[0]


def test_test_settings_are_clean() -> None:
    assert run_all() == []


def test_registered_with_django() -> None:
    with override_settings(CHATKIT=[]):
        assert "chatkit_django.E001" in ids(checks.run_checks())
    with override_settings(CHATKIT={"ALLOW_ANONYMOUS": True, "SERVER_CLASS": ECHO}):
        assert ids(checks.run_checks(tags=[checks.Tags.security])) == ["chatkit_django.W003"]


@override_settings(CHATKIT=["SERVER_CLASS"])
def test_e001_not_a_dict() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.E001"
    assert message.msg == "CHATKIT should be a dict, not list."
    assert isinstance(message, checks.Error)


@override_settings(CHATKIT={"SERVER_CLASS": ECHO, "MAX_UPLOADS_BYTES": 1, "ZZZ": 2})
def test_e002_unknown_keys() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.E002"
    assert message.msg == "Unknown CHATKIT key(s): MAX_UPLOADS_BYTES, ZZZ."
    assert "MAX_UPLOAD_BYTES" in message.hint
    assert message.hint == f"Valid keys are: {', '.join(sorted(DEFAULTS))}."


@override_settings(CHATKIT={"SERVER_CLASS": ECHO, "STORE_CLASS": "tests.nowhere.Store"})
def test_e003_dotted_path_does_not_import() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.E003"
    assert message.msg.startswith(
        "Could not import 'tests.nowhere.Store' for CHATKIT['STORE_CLASS']. ModuleNotFoundError: "
    )
    assert message.hint == "Point CHATKIT['STORE_CLASS'] at an importable dotted path."


def check_command(tmp_path: Path, settings: str, **modules: str) -> tuple[int, str]:
    """``manage.py check`` in a new process: tests.settings plus ``settings``, and ``modules``
    (name to source) importable. Returns the exit code and the output."""
    (tmp_path / "check_settings.py").write_text(
        "from tests.settings import *  # noqa\n" + textwrap.dedent(settings)
    )
    for name, source in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "check_settings",
        "PYTHONDEVMODE": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("source", "cause"),
    [
        # A snippet pasted without its imports.
        (
            "class MyChatKitServer(DjangoChatKitServer):\n    pass\n",
            "NameError: name 'DjangoChatKitServer' is not defined ({path}, line 1).",
        ),
        (
            (
                "from chatkit_django.server import DjangoChatKitServer\n\n"
                "class MyChatKitServer(DjangoChatKitServer)\n    pass\n"
            ),
            "SyntaxError: expected ':' ({path}, line 3).",
        ),
    ],
)
def test_e003_error_inside_the_server_module_is_a_check_not_a_traceback(
    tmp_path: Path, source: str, cause: str
) -> None:
    code, output = check_command(
        tmp_path, "CHATKIT = {'SERVER_CLASS': 'mychat.MyChatKitServer'}", mychat=source
    )
    assert code == 1
    assert "Traceback" not in output
    assert "chatkit_django.E003" in output
    path = tmp_path / "mychat.py"
    assert (
        "Could not import 'mychat.MyChatKitServer' for CHATKIT['SERVER_CLASS']. "
        + cause.format(path=path)
    ) in output


def test_e007_typo_in_storage_alias_reaches_the_check(tmp_path: Path) -> None:
    # The model's FileField resolves its storage at import; the typo must not break that.
    code, output = check_command(tmp_path, "CHATKIT = {**CHATKIT, 'STORAGE_ALIAS': 'chatkt'}")
    assert code == 1
    assert "Traceback" not in output
    assert "chatkit_django.E007" in output
    assert "CHATKIT['STORAGE_ALIAS'] is 'chatkt', which is not a key of STORAGES." in output


def test_e007_the_models_storage_stands_in_until_a_file_is_touched(settings: Any) -> None:
    from chatkit_django.models import UnconfiguredStorage, attachment_storage

    settings.CHATKIT = {"SERVER_CLASS": ECHO, "STORAGE_ALIAS": "chatkt"}
    storage = attachment_storage()
    assert isinstance(storage, UnconfiguredStorage)
    with pytest.raises(ImproperlyConfigured) as raised:
        storage.open("chatkit/atc_1.png")
    assert str(raised.value) == (
        "The chatkit_django attachment storage is not configured: Could not find config for "
        "'chatkt' in settings.STORAGES. Run manage.py check."
    )


@override_settings(CHATKIT={"SERVER_CLASS": "tests.testapp.server.Missing"})
def test_e003_for_server_class_does_not_also_report_e004() -> None:
    assert ids(run_all()) == ["chatkit_django.E003"]


@override_settings(CHATKIT={})
def test_e004_server_class_not_set() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.E004"
    assert message.msg == "CHATKIT['SERVER_CLASS'] is not set."


@override_settings(CHATKIT={"SERVER_CLASS": "chatkit_django.store.DjangoStore"})
def test_e008_server_class_of_the_wrong_kind() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.E008"
    assert message.msg == (
        "CHATKIT['SERVER_CLASS'] <class 'chatkit_django.store.DjangoStore'> is not a subclass "
        "of chatkit.server.ChatKitServer."
    )


@pytest.mark.parametrize("value", [0, -1, "10", None, True])
def test_e005_not_a_positive_number(value: Any) -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "MAX_UPLOAD_BYTES": value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E005"
    assert message.msg == f"CHATKIT['MAX_UPLOAD_BYTES'] should be a positive number, not {value!r}."


@pytest.mark.parametrize("value", [0, -1, "1", True])
def test_e005_release_interval_is_a_positive_number_or_none(value: Any) -> None:
    key = "RELEASE_CONNECTIONS_SECONDS"
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, key: None}):
        assert run_all() == []
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, key: value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E005"
    assert message.msg == f"CHATKIT[{key!r}] should be a positive number, not {value!r}."


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PARTIAL_SAVE_SECONDS", 0),
        ("PARTIAL_SAVE_SECONDS", "2"),
        ("BACKGROUND_MAX_SECONDS", None),
        ("BACKGROUND_MAX_SECONDS", -1),
    ],
)
def test_e005_background_answer_times(key: str, value: Any) -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "PARTIAL_SAVE_SECONDS": None}):
        assert run_all() == []
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, key: value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E005"
    assert message.msg == f"CHATKIT[{key!r}] should be a positive number, not {value!r}."


@pytest.mark.parametrize("value", ["finsh", "", None, True])
def test_e011_on_disconnect_is_cancel_or_finish(value: Any) -> None:
    for good in ("cancel", "finish"):
        with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "ON_DISCONNECT": good}):
            assert run_all() == []
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "ON_DISCONNECT": value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E011"
    assert message.msg == (
        f"CHATKIT['ON_DISCONNECT'] should be 'cancel' or 'finish', not {value!r}."
    )


@pytest.mark.parametrize("value", [0, -1, 2.5, "10", None, True])
def test_e005_attachments_per_message_is_a_positive_integer(value: Any) -> None:
    key = "MAX_ATTACHMENTS_PER_MESSAGE"
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, key: 3}):
        assert run_all() == []
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, key: value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E005"
    assert message.msg == f"CHATKIT[{key!r}] should be a positive integer, not {value!r}."


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({}, "it is empty"),
        ({"image": 5, "*": 5}, "'image' is not a MIME pattern ('type/subtype', 'type/*' or '*')"),
        ({"image/*/x": 5, "*": 5}, "'image/*/x' is not a MIME pattern"),
        ({"": 5, "*": 5}, "'' is not a MIME pattern"),
        ({3: 5, "*": 5}, "3 is not a MIME pattern"),
        ({"image/*": 0, "*": 5}, "the limit for 'image/*' is 0, not a positive integer"),
        ({"image/*": -1, "*": 5}, "the limit for 'image/*' is -1, not a positive integer"),
        ({"image/*": 2.5, "*": 5}, "the limit for 'image/*' is 2.5, not a positive integer"),
        ({"image/*": "10MB", "*": 5}, "the limit for 'image/*' is '10MB', not a positive integer"),
        ({"image/*": True, "*": 5}, "the limit for 'image/*' is True, not a positive integer"),
        ({"image/*": 5, "IMAGE/*": 6, "*": 5}, "'IMAGE/*' repeats 'image/*'"),
        ({"*": 5, "*/*": 6}, "'*/*' repeats '*'"),
    ],
)
def test_e040_bad_upload_limits_mapping(value: Any, problem: str) -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "MAX_UPLOAD_BYTES": value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E040"
    assert message.msg.startswith(f"CHATKIT['MAX_UPLOAD_BYTES']: {problem}")
    assert isinstance(message, checks.Error)


def test_w040_upload_limits_mapping_without_a_fallback() -> None:
    good = {"image/*": 10 * 2**20, "application/PDF": 25 * 2**20, "*/*": 5 * 2**20}
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "MAX_UPLOAD_BYTES": good}):
        assert run_all() == []
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "MAX_UPLOAD_BYTES": {"image/*": 9}}):
        message = only(run_all())
    assert message.id == "chatkit_django.W040"
    assert message.msg == (
        "CHATKIT['MAX_UPLOAD_BYTES'] has no '*' entry: files of a type no pattern matches are "
        "limited to the default, 20971520 bytes."
    )
    assert isinstance(message, checks.Warning)


@pytest.mark.parametrize("value", ["image/png", ["image"], ["image/png", 3], ["a/b/c"]])
def test_e006_bad_mime_types(value: Any) -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "ALLOWED_MIME_TYPES": value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E006"
    assert f"not {value!r}." in message.msg


def test_e006_accepts_wildcards() -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "ALLOWED_MIME_TYPES": ["image/*"]}):
        assert run_all() == []


@override_settings(CHATKIT={"SERVER_CLASS": ECHO, "STORAGE_ALIAS": "uploads"})
def test_e007_unknown_storage_alias() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.E007"
    assert message.msg == "CHATKIT['STORAGE_ALIAS'] is 'uploads', which is not a key of STORAGES."
    assert message.hint == "Add STORAGES['uploads'] or use one of: default, staticfiles."


@pytest.mark.parametrize("value", ["chat.example.com", "/chat", "ftp://example.com", 3])
def test_e009_base_url_not_absolute(value: Any) -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "BASE_URL": value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E009"
    assert f"not {value!r}." in message.msg


def test_e009_accepts_absolute_urls() -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "BASE_URL": "https://a.example/"}):
        assert run_all() == []


@override_settings(CHATKIT={"SERVER_CLASS": ECHO, "PRESIGNED_UPLOADS": True})
def test_w004_presigned_uploads_without_s3() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.W004"
    assert isinstance(message, checks.Warning)
    assert "not django-storages' S3Storage" in message.msg


def test_w004_silent_with_s3(settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "b", "access_key": "k", "secret_key": "s"},
        },
    }
    settings.CHATKIT = {"SERVER_CLASS": ECHO, "PRESIGNED_UPLOADS": True}
    assert run_all() == []


def test_e010_storage_without_its_optional_dependency(without_boto3: None, settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "b", "access_key": "k", "secret_key": "s"},
        },
    }
    settings.CHATKIT = {"SERVER_CLASS": ECHO, "PRESIGNED_UPLOADS": True}
    messages = [m for m in checks.run_checks() if m.id.startswith("chatkit_django.")]
    message = only(messages)
    assert message.id == "chatkit_django.E010"
    assert message.msg.startswith(
        "The attachment storage cannot be loaded: Could not load Boto3's S3 bindings."
    )
    assert message.hint == (
        "Install boto3 with the s3 extra: pip install 'chatkit-django[s3]'. "
        "Or point CHATKIT['STORAGE_ALIAS'] at a storage that loads."
    )


@override_settings(ASGI_APPLICATION=None)
def test_w001_not_asgi() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.W001"
    assert isinstance(message, checks.Warning)
    assert "not set up for ASGI" in message.msg


def test_w001_runserver_is_wsgi_in_debug(settings: Any) -> None:
    # ASGI_APPLICATION is set (as the test settings do), but runserver is Django's own.
    settings.DEBUG = True
    message = only(run_all())
    assert message.id == "chatkit_django.W001"
    assert message.msg == (
        "chatkit_django streams Server-Sent Events, but manage.py runserver (from "
        "'django.core') is Django's WSGI server: each answer is buffered and arrives whole, "
        "at the end."
    )
    assert message.hint.startswith("Add 'daphne' first in INSTALLED_APPS")


def test_w001_daphne_after_staticfiles_loses_runserver(settings: Any) -> None:
    settings.DEBUG = True
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "django.contrib.staticfiles", "daphne"]
    message = only(run_all())
    assert message.id == "chatkit_django.W001"
    assert "runserver (from 'django.contrib.staticfiles')" in message.msg


def test_w001_silent_with_daphne_first_in_debug(settings: Any) -> None:
    settings.DEBUG = True
    settings.INSTALLED_APPS = ["daphne", *settings.INSTALLED_APPS, "django.contrib.staticfiles"]
    assert run_all() == []


def test_w001_silent_with_daphne(settings: Any) -> None:
    settings.ASGI_APPLICATION = None
    settings.INSTALLED_APPS = ["daphne", *settings.INSTALLED_APPS]
    assert run_all() == []


def test_w002_persistent_connections_under_asgi(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Patched in place for the one call: override_settings(DATABASES=...) is not supported.
    monkeypatch.setitem(settings.DATABASES["default"], "CONN_MAX_AGE", 60)
    message = only(chatkit_checks.check_deployment())
    monkeypatch.undo()
    assert message.id == "chatkit_django.W002"
    assert message.msg == "DATABASES['default']['CONN_MAX_AGE'] is 60 under ASGI."


@override_settings(CHATKIT={"SERVER_CLASS": ECHO, "ALLOW_ANONYMOUS": True})
def test_w003_anonymous_access() -> None:
    message = only(run_all())
    assert message.id == "chatkit_django.W003"
    assert message.msg == (
        "CHATKIT['ALLOW_ANONYMOUS'] is True: anyone can reach the ChatKit endpoint."
    )


def check_ids_in_source() -> list[str]:
    """Every ``id="chatkit_django.…"`` literal in checks.py, in source order."""
    tree = ast.parse((ROOT / "chatkit_django" / "checks.py").read_text())
    return [
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "id" and isinstance(kw.value, ast.Constant)
    ]


def test_every_check_id_is_unique() -> None:
    found = check_ids_in_source()
    assert len(found) >= 11
    assert len(found) == len(set(found)), sorted(found)


def test_every_check_id_is_documented_and_tested() -> None:
    documented = re.findall(
        r"\*\*(chatkit_django\.[EW]\d{3})\*\*", (ROOT / "docs/reference/checks.md").read_text()
    )
    assert sorted(documented) == sorted(check_ids_in_source())
    tested = set(re.findall(r"def test_([ew]\d{3})_", Path(__file__).read_text()))
    assert {f"chatkit_django.{t.upper()}" for t in tested} == set(check_ids_in_source())


@pytest.mark.parametrize(
    "sources",
    [
        ["tests.testapp.server.EchoServer"],
        ["chatkit_django.entities.EntitySource"],
        ["tests.testapp.entities.NoteSource", "tests.testapp.entities.NoteSource"],
    ],
)
def test_e020_bad_entity_sources(sources: list[str]) -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "ENTITY_SOURCES": sources}):
        assert ids(run_all()) == ["chatkit_django.E020"]


def test_e020_silent_for_good_sources() -> None:
    with override_settings(
        CHATKIT={
            "SERVER_CLASS": ECHO,
            "ENTITY_SOURCES": [
                "tests.testapp.entities.NoteSource",
                "tests.testapp.entities.PublicNoteSource",
            ],
        }
    ):
        assert run_all() == []


@pytest.mark.parametrize(
    ("rates", "problem"),
    [
        ({"respond": "30/minx"}, "CHATKIT['THROTTLE_RATES']['respond'] is '30/minx'"),
        ({"upload": "30 / min"}, "CHATKIT['THROTTLE_RATES']['upload'] is '30 / min'"),
        ({"upload": "0/day"}, "CHATKIT['THROTTLE_RATES']['upload'] is '0/day'"),
        ({"other": "5/min\n"}, "CHATKIT['THROTTLE_RATES']['other'] is '5/min\\n'"),
        ({"transcribe": 30}, "CHATKIT['THROTTLE_RATES']['transcribe'] is 30"),
        ("30/min", "CHATKIT['THROTTLE_RATES'] should be a dict of scope to rate, not '30/min'"),
    ],
)
def test_e030_bad_throttle_rates(rates: Any, problem: str) -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "THROTTLE_RATES": rates}):
        message = only(run_all())
    assert message.id == "chatkit_django.E030"
    assert message.msg.startswith(problem)
    assert "'30/min'" in message.hint


def test_e030_silent_for_drf_rates() -> None:
    rates = {"respond": "30/min", "upload": "5/second", "transcribe": "100/hour", "other": None}
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "THROTTLE_RATES": rates}):
        assert run_all() == []
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "THROTTLE_RATES": {"other": "9/d"}}):
        assert run_all() == []


def test_e031_throttle_cache_missing() -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "THROTTLE_CACHE": "throttles"}):
        message = only(run_all())
    assert message.id == "chatkit_django.E031"
    assert message.msg == "CHATKIT['THROTTLE_CACHE'] is 'throttles', which is not a key of CACHES."
    assert message.hint == "Add CACHES['throttles'] or use one of: default."


def test_w030_unknown_throttle_scope() -> None:
    rates = {"responds": "30/min", "other": None}
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "THROTTLE_RATES": rates}):
        message = only(run_all())
    assert message.id == "chatkit_django.W030"
    assert isinstance(message, checks.Warning)
    assert "'responds'" in message.msg
    assert message.hint.startswith("The scopes are: respond, upload, transcribe, other.")


@pytest.mark.parametrize("value", [0, -1, 2.5, "8", None, True])
def test_e005_request_threads_is_a_positive_integer(value: Any) -> None:
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "REQUEST_THREADS": value}):
        message = only(run_all())
    assert message.id == "chatkit_django.E005"
    assert message.msg == f"CHATKIT['REQUEST_THREADS'] should be a positive integer, not {value!r}."


@pytest.mark.parametrize(
    ("pool", "threads", "size"),
    [(True, 8, 4), ({"min_size": 2}, 4, 2), ({"min_size": 2, "max_size": 6}, 8, 6)],
)
def test_w050_pool_smaller_than_request_threads(
    settings: Any, monkeypatch: pytest.MonkeyPatch, pool: Any, threads: int, size: int
) -> None:
    monkeypatch.setitem(settings.DATABASES["default"], "ENGINE", "django.db.backends.postgresql")
    monkeypatch.setitem(settings.DATABASES["default"], "OPTIONS", {"pool": pool})
    with override_settings(CHATKIT={"SERVER_CLASS": ECHO, "REQUEST_THREADS": threads}):
        message = only(chatkit_checks.check_deployment())
        monkeypatch.setitem(
            settings.DATABASES["default"], "OPTIONS", {"pool": {"max_size": threads}}
        )
        assert chatkit_checks.check_deployment() == []
    monkeypatch.undo()
    assert message.id == "chatkit_django.W050"
    assert message.msg == (
        f"DATABASES['default']'s connection pool holds at most {size} connections, "
        f"fewer than CHATKIT['REQUEST_THREADS'] ({threads})."
    )


def takes_nothing() -> None:
    """A context factory that cannot take the request."""


def takes_two(request: Any, tenant: Any) -> None:
    """Nor can this one, with the request alone."""


def takes_the_request(request: Any) -> None:
    """Enough for the endpoint (not for server-started conversations, said when used)."""


async def takes_everything(request: Any, user: Any = None, scope: Any = None) -> None:
    """What the guide recommends."""


@pytest.mark.parametrize("factory", ["takes_nothing", "takes_two"])
def test_e012_the_context_factory_takes_the_request(factory: str) -> None:
    for good in ("takes_the_request", "takes_everything"):
        with override_settings(
            CHATKIT={"SERVER_CLASS": ECHO, "CONTEXT_FACTORY": f"{__name__}.{good}"}
        ):
            assert run_all() == []
    with override_settings(
        CHATKIT={"SERVER_CLASS": ECHO, "CONTEXT_FACTORY": f"{__name__}.{factory}"}
    ):
        message = only(run_all())
    assert message.id == "chatkit_django.E012"
    assert message.msg == (
        f"CHATKIT['CONTEXT_FACTORY'] {factory} cannot be called with the request alone."
    )
