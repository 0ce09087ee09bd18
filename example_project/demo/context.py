"""The demo's context: which agent a request talks to, each with a history of its own.

The page's widget sends the agent as the scope header (``{% chatkit_widget scope=agent %}``);
the store keeps each agent's threads apart (``ChatKitContext.scope``).
"""

from __future__ import annotations

from chatkit_django.context import SCOPE_HEADER, ChatKitContext
from chatkit_django.exceptions import InvalidScope

# --8<-- [start:agents]
#: The demo's agents, by scope: the same user has one history with each.
AGENTS = {"support": "Support", "sales": "Sales"}


def chatkit_context(request, user=None, scope=None):
    """CHATKIT["CONTEXT_FACTORY"]: the agent named by the widget's scope header.

    The header comes from the client, so only a known agent is accepted. A request without
    one (the admin, a script) is unscoped: it sees every agent's threads. Outside a request
    (``astart_thread(user, ..., scope="sales")``), the agent is the ``scope`` argument.
    """
    agent = scope
    if request is not None:
        agent, user = request.headers.get(SCOPE_HEADER), request.user
    if agent is not None and agent not in AGENTS:
        raise InvalidScope(f"Unknown agent {agent[:40]!r}; choose one of {', '.join(AGENTS)}.")
    return ChatKitContext(user=user, request=request, scope=agent)


# --8<-- [end:agents]
