"""Context factories for CHATKIT['CONTEXT_FACTORY'] tests, one sync and one async."""

from django.http import HttpRequest

from chatkit_django.context import ChatKitContext


def sync_context(request: HttpRequest) -> ChatKitContext:
    locale = request.headers.get("Accept-Language", "en")
    return ChatKitContext(
        user=request.user, request=request, extra={"echo_prefix": f"sync {locale}"}
    )


async def async_context(request: HttpRequest) -> ChatKitContext:
    locale = request.headers.get("Accept-Language", "en")
    return ChatKitContext(
        user=request.user, request=request, extra={"echo_prefix": f"async {locale}"}
    )
