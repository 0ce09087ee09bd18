"""``chatkit_settings``: defaults, reloading under ``override_settings``, import errors."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import types
import typing
import weakref
from typing import Any

import openai
import pytest
from django.test import override_settings

from chatkit_django import conf
from chatkit_django.conf import DEFAULTS, IMPORT_STRINGS, ChatKitSettings, chatkit_settings
from chatkit_django.store import DjangoStore
from tests import ROOT
from tests.testapp.server import EchoServer


def default(key: str) -> Any:
    return DEFAULTS[key]


def setting(key: str) -> Any:
    # A call rather than ``chatkit_settings.KEY``, which ruff's SIM300 takes for a constant.
    return getattr(chatkit_settings, key)


@override_settings(CHATKIT={})
def test_defaults() -> None:
    for key, value in DEFAULTS.items():
        if key in IMPORT_STRINGS and isinstance(value, str):
            continue
        assert getattr(chatkit_settings, key) == value, key
    assert chatkit_settings.STORE_CLASS is DjangoStore
    assert chatkit_settings.SERVER_CLASS is None


def test_project_values_win_and_dotted_paths_are_imported() -> None:
    assert chatkit_settings.SERVER_CLASS is EchoServer
    with override_settings(
        CHATKIT={
            "MAX_UPLOAD_BYTES": 5,
            "AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
        }
    ):
        from rest_framework.authentication import TokenAuthentication

        assert setting("MAX_UPLOAD_BYTES") == 5
        assert setting("AUTHENTICATION_CLASSES") == [TokenAuthentication]
        assert setting("MAX_REQUEST_BYTES") == default("MAX_REQUEST_BYTES")


def test_override_settings_reloads_cached_values() -> None:
    assert setting("MAX_UPLOAD_BYTES") == default("MAX_UPLOAD_BYTES")  # now cached
    with override_settings(CHATKIT={"MAX_UPLOAD_BYTES": 7}):
        assert setting("MAX_UPLOAD_BYTES") == 7
        with override_settings(CHATKIT={"MAX_UPLOAD_BYTES": 8}):
            assert setting("MAX_UPLOAD_BYTES") == 8
        assert setting("MAX_UPLOAD_BYTES") == 7
    assert setting("MAX_UPLOAD_BYTES") == default("MAX_UPLOAD_BYTES")
    assert chatkit_settings.SERVER_CLASS is EchoServer


def test_other_settings_do_not_reload(settings: object) -> None:
    cached = ChatKitSettings()
    keepalive = cached.KEEPALIVE_SECONDS
    assert keepalive == default("KEEPALIVE_SECONDS")
    with override_settings(DEBUG=True):
        assert "KEEPALIVE_SECONDS" in vars(cached)


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match=r"^Invalid CHATKIT setting: 'MAX_UPLOADS'$"):
        _ = chatkit_settings.MAX_UPLOADS


@override_settings(CHATKIT={"STORE_CLASS": "myproject.stores.Missing"})
def test_import_error_names_setting_value_and_cause() -> None:
    with pytest.raises(ImportError) as excinfo:
        _ = chatkit_settings.STORE_CLASS
    assert str(excinfo.value) == (
        "Could not import 'myproject.stores.Missing' for CHATKIT['STORE_CLASS']. "
        "ModuleNotFoundError: No module named 'myproject'."
    )
    assert isinstance(excinfo.value.__cause__, ModuleNotFoundError)


@override_settings(CHATKIT={"CONTEXT_FACTORY": "chatkit_django.store.NoSuchThing"})
def test_import_error_for_a_missing_attribute() -> None:
    with pytest.raises(ImportError, match=r"Module \"chatkit_django.store\" does not define"):
        _ = chatkit_settings.CONTEXT_FACTORY


@override_settings(CHATKIT="not a dict")
def test_non_dict_falls_back_to_defaults() -> None:
    # checks.py reports it (E001); reading settings must not crash meanwhile.
    assert setting("MAX_UPLOAD_BYTES") == default("MAX_UPLOAD_BYTES")


def test_every_key_is_documented() -> None:
    reference = (ROOT / "docs/reference/settings.md").read_text()
    for key, value in DEFAULTS.items():
        assert f"### `{key}`" in reference, key
        section = reference.split(f"### `{key}`", 1)[1].split("###", 1)[0]
        assert "Default: `" in section, key
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            assert f"Default: `{json.dumps(value)}`" in section, key


def test_package_and_conf_import_without_settings() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    code = "import chatkit_django, chatkit_django.conf; print(chatkit_django.__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_one_setting_changed_receiver_resets_every_cache() -> None:
    """conf.py's receiver is the only one in the package; it empties every settings cache."""
    from django.core.signals import setting_changed

    from chatkit_django import conf, entities, server, transcription

    receivers = [
        r[1]() if isinstance(r[1], weakref.ref) else r[1] for r in setting_changed.receivers
    ]
    ours = [r for r in receivers if getattr(r, "__module__", "").startswith("chatkit_django")]
    assert ours == [conf.reload_chatkit_settings]

    built = server.get_server()
    sources = entities.get_entity_sources()
    loop = asyncio.new_event_loop()
    transcription._clients[loop] = openai.AsyncOpenAI(api_key="unused")
    try:
        with override_settings(CHATKIT={"SERVER_CLASS": "tests.testapp.server.EchoServer"}):
            assert server.get_server() is not built
            assert entities.get_entity_sources() is not sources
            assert loop not in transcription._clients
    finally:
        loop.close()


def test_on_reload_runs_a_registered_reset_once_per_change() -> None:
    from chatkit_django.conf import _resets, on_reload

    calls: list[int] = []

    def reset() -> None:
        calls.append(1)

    assert on_reload(reset) is reset
    on_reload(reset)
    try:
        with override_settings(CHATKIT={"MAX_UPLOAD_BYTES": 3}):
            assert calls == [1]
        assert calls == [1, 1]
        with override_settings(DEBUG=True):
            pass
        assert calls == [1, 1]
    finally:
        _resets.remove(reset)


def test_on_reload_snippet_in_the_settings_reference() -> None:
    from chatkit_django.conf import _resets

    reference = (ROOT / "docs/reference/settings.md").read_text()
    block = re.search(r"```python\n(from functools import cache\n.*?)```", reference, re.DOTALL)
    assert block is not None
    namespace: dict[str, Any] = {}
    exec(block[1], namespace)  # noqa: S102 - the reference's own snippet
    limit = namespace["upload_limit_in_mb"]
    try:
        assert limit() == default("MAX_UPLOAD_BYTES") // 2**20
        with override_settings(CHATKIT={"MAX_UPLOAD_BYTES": 3 * 2**20}):
            assert limit() == 3
        assert limit() == default("MAX_UPLOAD_BYTES") // 2**20
    finally:
        _resets.remove(limit.cache_clear)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type ``hint`` (the shapes DEFAULTS uses)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, arg) for arg in args)
    if hint is None or hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()
        )
    return isinstance(value, origin or hint)


def test_every_key_has_a_type_and_its_default_is_of_it() -> None:
    # The annotations type the settings for the checker: one per key, and none may become a
    # class attribute, or reads would skip __getattr__ (and reload) for that key.
    from chatkit.server import ChatKitServer
    from chatkit.store import AttachmentStore, Store
    from django.http import HttpRequest
    from rest_framework.authentication import BaseAuthentication

    from chatkit_django.entities import EntitySource

    assert set(ChatKitSettings.__annotations__) == set(DEFAULTS)
    assert not [key for key in DEFAULTS if key in vars(ChatKitSettings)]
    names = {
        "ChatKitServer": ChatKitServer,
        "Store": Store,
        "AttachmentStore": AttachmentStore,
        "HttpRequest": HttpRequest,
        "AsyncOpenAI": openai.AsyncOpenAI,
        "BaseAuthentication": BaseAuthentication,
        "EntitySource": EntitySource,
    }
    hints = typing.get_type_hints(ChatKitSettings, vars(conf) | names)
    for key, value in DEFAULTS.items():
        if key not in IMPORT_STRINGS:
            assert _matches(value, hints[key]), (key, value, hints[key])
