"""A context factory that takes the scope straight from the client, for the bad-scope tests."""

from django.http import HttpRequest

from chatkit_django.context import ChatKitContext


def query_scope_context(request: HttpRequest) -> ChatKitContext:
    """The scope straight from ``?scope=``, unchecked: the store must refuse what it cannot hold."""
    return ChatKitContext(user=request.user, request=request, scope=request.GET.get("scope"))
