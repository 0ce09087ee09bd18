"""Hypothesis strategies for ChatKit request bodies, derived from the SDK's own request types.

``requests()`` walks the pydantic models of ``chatkit.types.ChatKitReq`` (fields, aliases,
literals, unions, lists, dicts) and draws the JSON a client would send, so a new request type
or field in the SDK is fuzzed without a change here. ``mutated()`` then damages that JSON the
way a careless or hostile client would: wrong types, huge and negative numbers, NULs and odd
unicode, deep nesting, missing and unknown fields, unknown item types, other users' ids.
"""

from __future__ import annotations

import datetime
import enum
import json
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from chatkit.types import ChatKitReq
from hypothesis import strategies as st
from pydantic import AnyUrl, BaseModel

#: The SDK's request models, in the order of its union.
REQUEST_TYPES: tuple[type[BaseModel], ...] = typing.get_args(typing.get_args(ChatKitReq)[0])

# Values that break naive code: out of every integer column's range, negative, NULs that
# PostgreSQL refuses, lone surrogates, ids longer than our 255-character columns.
HOSTILE_NUMBERS = [2**63, 2**63 - 1, 2**64, -(2**63) - 1, -1, 0, 10**30, -(10**30), 1e308, -0.5]
HOSTILE_INTS = [n for n in HOSTILE_NUMBERS if isinstance(n, int)]
HOSTILE_STRINGS = [
    "",
    "\x00",
    "a\x00b",
    "\ud800",
    "x" * 256,
    "\u202e\u0000\U0001f600",
    "../../etc/passwd",
    "'; DROP TABLE chatkit_django_thread; --",
    "<script>alert(1)</script>",
    "9" * 40,
]
UNKNOWN_TYPES = ["", "unknown", "threads.nope", "input_image", "widget", "__proto__"]

# Any unicode but lone surrogates (which are only in HOSTILE_STRINGS, so that most bodies
# still reach the code behind the parser).
TEXT = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(HOSTILE_STRINGS)
JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)

#: The ids to draw for a field of a given name ("thread_id", "item_ids"...; "" for any).
Ids = Callable[[str], st.SearchStrategy[str]]


def _is_id(name: str) -> bool:
    return name == "id" or name.endswith(("_id", "_ids")) or name == "attachments"


class _Builder:
    """Strategies for the JSON of one annotation, with ids drawn from ``ids``."""

    def __init__(self, ids: Ids) -> None:
        self.ids = ids
        self.models: dict[type[BaseModel], st.SearchStrategy[dict[str, Any]]] = {}

    def model(self, cls: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
        if cls not in self.models:
            # deferred: the SDK's types may refer to themselves (widgets do).
            self.models[cls] = st.deferred(lambda: self._model(cls))
        return self.models[cls]

    def _model(self, cls: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
        hints = typing.get_type_hints(cls, include_extras=True)
        required: dict[str, st.SearchStrategy[Any]] = {}
        optional: dict[str, st.SearchStrategy[Any]] = {}
        for name, field in cls.model_fields.items():
            key = field.alias or name
            annotation = field.annotation
            if "ForwardRef" in repr(annotation):  # the SDK's string annotations
                annotation = hints.get(name, annotation)
            strategy = self.annotation(annotation, name)
            (required if field.is_required() or name == "type" else optional)[key] = strategy
        return st.fixed_dictionaries(required, optional=optional)

    def annotation(self, tp: Any, name: str = "") -> st.SearchStrategy[Any]:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            return self.annotation(args[0], name)
        if origin in (typing.Union, types.UnionType):
            return st.one_of([self.annotation(arg, name) for arg in args])
        if origin is typing.Literal:
            return st.sampled_from(args)
        if origin in (list, Sequence, set, frozenset, tuple):
            return st.lists(self.annotation(args[0] if args else Any, name), max_size=3)
        if origin is dict:
            return st.dictionaries(st.text(max_size=8), self.annotation(args[1], name), max_size=3)
        if tp is type(None):
            return st.none()
        if isinstance(tp, typing.TypeVar):
            return self.annotation(tp.__bound__ or Any, name)
        if isinstance(tp, type):
            if issubclass(tp, BaseModel):
                return self.model(tp)
            if issubclass(tp, enum.Enum):
                return st.sampled_from([member.value for member in tp])
            if issubclass(tp, bool):
                return st.booleans()
            if issubclass(tp, int):
                # Valid for pydantic's ``int``, and so passed on: huge and negative numbers.
                return st.integers(min_value=-5, max_value=50) | st.sampled_from(HOSTILE_INTS)
            if issubclass(tp, float):
                return st.floats(allow_nan=False, allow_infinity=False)
            if issubclass(tp, str):
                return self.ids(name) if _is_id(name) else TEXT
            if issubclass(tp, bytes):
                return st.text(alphabet="abcdAB09+/=", max_size=40)
            if issubclass(tp, datetime.datetime):
                return st.datetimes().map(datetime.datetime.isoformat)
            if issubclass(tp, AnyUrl):
                return st.sampled_from(["https://example.com/a.png", "javascript:alert(1)"])
        return JSON_VALUES


def requests(ids: Ids) -> st.SearchStrategy[dict[str, Any]]:
    """Well-typed request bodies of every type the SDK accepts."""
    builder = _Builder(ids)
    return st.one_of([builder.model(cls) for cls in REQUEST_TYPES])


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _hostile_values(ids: Ids) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HOSTILE_NUMBERS),
        st.sampled_from(HOSTILE_STRINGS),
        st.sampled_from([None, True, [], {}, {"type": "unknown"}, [None]]),
        st.sampled_from([_deep(50), _deep(300)]),
        st.lists(ids(""), min_size=1, max_size=5),
        ids(""),
        TEXT,
        JSON_VALUES,
    )


def _slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys and list indexes)."""
    found = [path] if path else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _slots(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _slots(child, (*path, index))
    return found


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def mutated(draw: st.DrawFn, ids: Ids) -> dict[str, Any] | Any:
    """A request body, valid or damaged in up to three places."""
    doc = draw(requests(ids))
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        # Not the request's own type: an unknown one only tests the parser (RAW_BODIES do).
        slots = [path for path in _slots(doc) if path != ("type",)]
        if not slots:
            break
        path = draw(st.sampled_from(slots))
        parent = _parent(doc, path)
        key = path[-1]
        how = draw(st.sampled_from(["replace", "replace", "delete", "add", "retype"]))
        if how == "replace":
            parent[key] = draw(_hostile_values(ids))
        elif how == "delete":
            del parent[key]
        elif how == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(_hostile_values(ids))
        elif how == "add":
            parent.append(draw(_hostile_values(ids)))
        elif isinstance(parent, dict) and "type" in parent:
            parent["type"] = draw(st.sampled_from(UNKNOWN_TYPES))
    return doc


def encode(doc: Any) -> bytes:
    """The body as ChatKit.js would send it: JSON, UTF-8 (lone surrogates stay escaped)."""
    return json.dumps(doc).encode()


#: Bodies that are not a JSON request at all.
RAW_BODIES = st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b'"threads.list"',
        b"{",
        b'{"type": "threads.list", "params": {"limit": NaN}}',
        b'{"type": "threads.list", "params": {"limit": Infinity}}',
        b"\xff\xfe{}",
        b'{"type": "threads.list", "params": {}, "type": "items.list"}',
        b'{"type": "threads.nope", "params": {}}',
        b'{"params": {"thread_id": "thr_1"}}',
        b"[" * 10_000 + b"]" * 10_000,
        json.dumps({"type": "threads.list", "params": {"limit": 2**63}}).encode(),
    ]
)
