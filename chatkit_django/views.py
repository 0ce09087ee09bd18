"""``ChatKitView``: the ChatKit endpoint as a native async Django view."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from chatkit_django.streaming import ChatKitEndpointMixin


# CSRF is enforced by the endpoint itself, for session-authenticated requests only (token
# requests carry no cookie to forge), as DRF's SessionAuthentication does.
@method_decorator(csrf_exempt, name="dispatch")
class ChatKitView(ChatKitEndpointMixin, View):
    """One POST URL for every ChatKit request; SSE for streaming ones, JSON for the rest.

    Subclass and override the mixin's ``get_*`` methods (``get_context``, ``get_server``,
    ``get_authenticators``...) to change a policy for this endpoint.
    """

    async def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return await self.handle_chatkit(request)

    async def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        return await self.handle_chatkit(request)
