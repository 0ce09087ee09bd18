"""``{% load chatkit %}{% chatkit_widget %}``: ChatKit.js on any Django page, wired to our routes.

The tag renders an ``<openai-chatkit>`` element, the ChatKit.js script from its CDN and a
small script that calls ``setOptions()`` with the endpoint URL, a ``fetch`` that sends the
CSRF token (the session is the credential), the upload strategy with the server's size limits
(``composer.attachments.maxSize``, from ``CHATKIT['MAX_UPLOAD_BYTES']``) and, when the project serves
them, the @-mention search and preview callbacks. ChatKit.js options from the template
context are merged over those defaults.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.middleware.csrf import get_token
from django.urls import NoReverseMatch, reverse

from chatkit_django.context import SCOPE_HEADER
from chatkit_django.upload_limits import chatkit_js_max_size

register = template.Library()

CHATKIT_JS_URL = "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"
UPLOAD_STRATEGIES = ("direct", "two_phase", None)


def reverse_or_none(name: str) -> str | None:
    """The URL of a route another part of the app may add, or ``None`` while it is absent."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, recursively for nested dicts."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@register.inclusion_tag("chatkit_django/widget.html", takes_context=True)
def chatkit_widget(
    context: template.Context,
    options: dict[str, Any] | None = None,
    *,
    element_id: str = "chatkit",
    upload_strategy: str | None = "direct",
    domain_key: str = "local-dev",
    endpoint: str = "chatkit:endpoint",
    style: str = "display:block;height:640px;width:100%",
    script_url: str = CHATKIT_JS_URL,
    initial_thread: str | None = None,
    scope: str | None = None,
) -> dict[str, Any]:
    """Embed ChatKit.js pointed at this app's endpoint.

    Args:
        options: ChatKit.js options (JSON-serialisable) merged over the defaults, e.g.
            ``{"history": {"enabled": False}, "theme": {"colorScheme": "dark"}}``. Listen for
            the ``chatkit-django:options`` event on the element to add JavaScript callbacks.
        element_id: ``id`` of the ``<openai-chatkit>`` element.
        upload_strategy: ``"direct"`` (POST to ``chatkit:upload``), ``"two_phase"``
            (``attachments.create`` then an upload URL) or ``None`` (no attachments).
        domain_key: ChatKit.js ``api.domainKey``; register your domain with OpenAI in
            production.
        endpoint: URL name (or path) of the ChatKit endpoint.
        style: inline style of the element; ChatKit.js needs a height.
        script_url: where ChatKit.js is loaded from.
        initial_thread: id of a thread to open (ChatKit.js ``initialThread``), e.g. one
            started with ``chatkit_django.conversations.astart_thread``; empty or ``None``
            opens the start screen. The endpoint still checks the user may see it.
        scope: sent as the ``X-ChatKit-Scope`` header (``context.SCOPE_HEADER``) with every
            request, for the project's ``CONTEXT_FACTORY`` to put in ``ChatKitContext.scope``:
            a workspace, an agent, a tenant, each with a history of its own. Printable ASCII
            (an HTTP header value).
    """
    if upload_strategy not in UPLOAD_STRATEGIES:
        missing = context.template.engine.string_if_invalid if context.template else ""
        cause = (
            " A template variable that is missing from the context renders as "
            f"{missing!r}: pass upload_strategy in the view's context, or write "
            'upload_strategy="direct" in the tag.'
            if upload_strategy == missing
            else ""
        )
        raise template.TemplateSyntaxError(
            f"chatkit_widget upload_strategy must be 'direct', 'two_phase' or None, "
            f"not {upload_strategy!r}.{cause}"
        )
    if scope is not None and not (
        isinstance(scope, str) and scope.isascii() and scope.isprintable()
    ):
        raise template.TemplateSyntaxError(
            f"chatkit_widget scope must be printable ASCII (an HTTP header value), not {scope!r}."
        )
    request = context.get("request")
    if request is None:
        raise template.TemplateSyntaxError(
            "chatkit_widget needs 'request' in the template context: add "
            "'django.template.context_processors.request' to your context processors."
        )
    endpoint_url = reverse_or_none(endpoint) or endpoint
    api: dict[str, Any] = {"url": endpoint_url, "domainKey": domain_key}
    defaults: dict[str, Any] = {"api": api, "history": {"enabled": True}}
    defaults["threadItemActions"] = {"feedback": True, "retry": True}
    if initial_thread:
        defaults["initialThread"] = str(initial_thread)
    upload_url = reverse_or_none("chatkit:upload")
    if upload_strategy == "direct" and upload_url:
        api["uploadStrategy"] = {"type": "direct", "uploadUrl": upload_url}
    elif upload_strategy == "two_phase":
        api["uploadStrategy"] = {"type": "two_phase"}
    if "uploadStrategy" in api:
        # The server's own limits, so ChatKit.js refuses what the server would (413).
        defaults["composer"] = {"attachments": {"enabled": True, "maxSize": chatkit_js_max_size()}}
    return {
        "element_id": element_id,
        "config_id": f"{element_id}-config",
        "style": style,
        "script_url": script_url,
        "config": {
            "elementId": element_id,
            "csrfToken": get_token(request),
            "headers": {SCOPE_HEADER: scope} if scope else {},
            "entitySearchUrl": reverse_or_none("chatkit:entity-search"),
            "entityPreviewUrl": reverse_or_none("chatkit:entity-preview"),
            "options": merge(defaults, options or {}),
        },
    }
