"""A real jupyter_server Authorizer for the tests: on resource ``nb2prod`` it allows only the configured actions
(``c.ActionAuthorizer.allowed``); every other resource is allowed. Configured with
``ServerApp.authorizer_class = "tests.server.authz.ActionAuthorizer"``."""

from __future__ import annotations

from jupyter_server.auth.authorizer import Authorizer
from traitlets import List, Unicode


class ActionAuthorizer(Authorizer):
    """Allows the actions in ``allowed`` on resource ``nb2prod`` (e.g. ``["read"]``: a read-only deployment)."""

    allowed = List(Unicode(), default_value=["read", "write", "execute"], config=True)

    def is_authorized(self, handler, user, action: str, resource: str) -> bool:
        return resource != "nb2prod" or action in self.allowed
