# mysite/workspaces.py
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from chatkit_django.store import DjangoStore


@dataclass
class WorkspaceContext:
    member: Any
    workspace: str
    http_request: HttpRequest


def workspace_context(request):
    # One workspace per subdomain: acme.example.com is the workspace "acme".
    workspace = request.get_host().split(".")[0]
    return WorkspaceContext(member=request.user, workspace=workspace, http_request=request)


class WorkspaceStore(DjangoStore):
    def get_user(self, context):
        return context.member

    def get_request(self, context):
        return context.http_request

    def get_scope(self, context):
        return context.workspace
