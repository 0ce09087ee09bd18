"""Collision-safe ids with the SDK's prefixes."""

from __future__ import annotations

import uuid

from chatkit.store import StoreItemType, default_generate_id


def generate_id(item_type: StoreItemType) -> str:
    """``<sdk prefix>_<32 hex>``: 122 random bits instead of the SDK's 32.

    The prefix comes from the SDK's own generator (``thr``, ``msg``, ``atc``...), so new item
    types keep the SDK's naming without us copying its table.
    """
    prefix = default_generate_id(item_type).partition("_")[0]
    return f"{prefix}_{uuid.uuid4().hex}"
