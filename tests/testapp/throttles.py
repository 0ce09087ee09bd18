"""A project's own throttle on the endpoint (docs/guides/throttling.md)."""

from __future__ import annotations

from typing import Any

from chatkit.types import ChatKitReq

# --8<-- [start:site-wide]
from chatkit_django.throttling import ChatKitThrottle
from chatkit_django.views import ChatKitView


class SiteWideThrottle(ChatKitThrottle):
    """One count for all users together: a cap on what the whole site spends."""

    def get_rate(self) -> str | None:
        return {"respond": "100/min"}.get(self.scope)

    def get_cache_key(self, request: Any, view: Any) -> str:
        return f"chatkit_throttle_{self.scope}_site"


class CappedChatKitView(ChatKitView):
    def get_throttles(self, request: ChatKitReq) -> list[ChatKitThrottle]:
        scope = self.get_throttle_scope(request)
        return [*super().get_throttles(request), SiteWideThrottle(scope)]


# --8<-- [end:site-wide]
