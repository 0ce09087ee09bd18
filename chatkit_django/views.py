"""The app's native async views: the ChatKit endpoint and the two entity views.

The upload and content views are DRF views, in ``chatkit_django.uploads``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from chatkit_django._internal.nul import has_nul
from chatkit_django.authentication import (
    AuthenticationError,
    AuthenticationMixin,
    authentication_failed_response,
)
from chatkit_django.conf import chatkit_settings
from chatkit_django.entities import get_entity_sources, resolve_entity
from chatkit_django.exceptions import database_unavailable_response, error_response
from chatkit_django.reconnect import DATABASE_ERRORS
from chatkit_django.streaming import ChatKitEndpointMixin
from chatkit_django.throttling import ChatKitThrottle, throttle_request

if TYPE_CHECKING:
    from chatkit_django.context import UserLike

MAX_QUERY_CHARS = 200


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

    async def http_method_not_allowed(  # type: ignore[override]  # async view: a coroutine
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        return await self.handle_chatkit(request)


class EntityView(AuthenticationMixin, View):
    """Shared parts of the two entity views: the endpoint's authentication, JSON errors.

    The user is found exactly as the ChatKit endpoint finds it (``AUTHENTICATION_CLASSES``,
    then the session; anonymous only with ``ALLOW_ANONYMOUS``, in which case sources get an
    ``AnonymousUser``).
    """

    http_method_names = ["get"]
    throttle_scope = "other"  # see docs/guides/throttling.md

    def get_throttles(self) -> list[ChatKitThrottle]:
        """The throttles a request must pass once its user is known (DRF's hook)."""
        return [ChatKitThrottle(self.throttle_scope)]

    async def get_user(self, request: HttpRequest) -> UserLike:
        """The user whose entities are searched; raises ``AuthenticationError`` if none."""
        await self.authenticate(request)
        return request.user

    if TYPE_CHECKING:  # each view's handler; dispatch() calls it with the user

        async def get(self, request: HttpRequest, user: UserLike) -> JsonResponse: ...

    async def dispatch(  # type: ignore[override]  # async view: a coroutine
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        if request.method != "GET":
            response = error_response(
                _('Method "%(method)s" not allowed.') % {"method": request.method},
                "method_not_allowed",
                405,
            )
            response["Allow"] = "GET"
            return response
        try:
            try:
                user = await self.get_user(request)
            except (AuthenticationError, PermissionDenied) as e:
                return authentication_failed_response(e)
            if refused := await throttle_request(self.get_throttles(), request, self):
                return refused
            return await self.get(request, user)
        except DATABASE_ERRORS as e:
            return database_unavailable_response(e, type(self).__name__, request)


class EntitySearchView(EntityView):
    """``GET ?q=<query>[&source=<name>]`` → ``{"data": [Entity, ...]}`` for ``onTagSearch``.

    At most ``CHATKIT['ENTITY_SEARCH_LIMIT']`` entities, from the sources in settings order;
    one query per source.
    """

    def get_limit(self) -> int:
        return chatkit_settings.ENTITY_SEARCH_LIMIT

    async def get(self, request: HttpRequest, user: UserLike) -> JsonResponse:
        query = request.GET.get("q", "").strip()
        if has_nul(query):
            return error_response(
                _("The search query contains a NUL character."), "invalid_query", 400
            )
        if len(query) > MAX_QUERY_CHARS:
            return error_response(
                _("The search query is longer than %(max)d characters.") % {"max": MAX_QUERY_CHARS},
                "query_too_long",
                400,
            )
        sources = get_entity_sources()
        wanted = request.GET.get("source")
        if wanted is not None:
            if wanted not in sources:
                return error_response(
                    _("There is no entity source named %(name)r.") % {"name": wanted},
                    "unknown_source",
                    400,
                )
            sources = {wanted: sources[wanted]}
        limit = self.get_limit()
        entities: list[dict[str, Any]] = []
        for source in sources.values():
            if len(entities) >= limit:
                break
            rows = source.search(user, query)[: limit - len(entities)]
            entities.extend([source.to_entity(obj) async for obj in rows])
        return JsonResponse({"data": entities})


class EntityPreviewView(EntityView):
    """``GET ?id=<entity id>`` → ``{"preview": BasicRoot | null}`` for ``onRequestPreview``.

    An entity the user may not see answers 404, exactly like one that does not exist.
    """

    async def get(self, request: HttpRequest, user: UserLike) -> JsonResponse:
        entity_id = request.GET.get("id", "")
        if not entity_id:
            return error_response(_("Pass the entity id as ?id=."), "missing_id", 400)
        found = await resolve_entity(entity_id, user)
        if found is None:
            return error_response(_("Not found."), "not_found", 404)
        source, obj = found
        preview = source.get_preview(obj)
        payload = None if preview is None else preview.model_dump(mode="json", exclude_none=True)
        return JsonResponse({"preview": payload})
