"""Authorization beyond login: every nb2prod endpoint asks the server's Authorizer (resource ``nb2prod``).
The server runs with a real Authorizer class (``tests.server.authz.ActionAuthorizer``) allowing some actions.
Requests that pass authorization are built to fail afterwards (missing notebook, unknown schedule), so nothing
runs and nothing is stored."""

from __future__ import annotations

import json

import pytest

from tests.server.conftest import fetch_json

# (method, path parts, body or None, query params, the action it needs)
REQUESTS = [
    ("GET", ("runs",), None, {}, "read"),
    ("GET", ("runs", "nosuchrun000"), None, {}, "read"),
    ("POST", ("check",), {"path": "missing.ipynb"}, {}, "read"),
    ("GET", ("schedules",), None, {}, "read"),
    ("GET", ("schedules", "nosuch"), None, {}, "read"),
    ("GET", ("schedule-preview",), None, {"cron": "@daily"}, "read"),
    ("GET", ("schedulers",), None, {}, "read"),
    ("POST", ("runs",), {"path": "missing.ipynb"}, {}, "execute"),
    ("POST", ("runs", "nosuchrun000", "cancel"), {}, {}, "execute"),
    ("POST", ("schedules", "nosuch", "run-now"), {}, {}, "execute"),
    ("POST", ("schedules",), {"name": "x", "path": "missing.ipynb", "cron": "@daily"}, {}, "write"),
    ("POST", ("schedules", "nosuch", "pause"), {}, {}, "write"),
    ("POST", ("schedules", "nosuch", "resume"), {}, {}, "write"),
    ("DELETE", ("schedules", "nosuch"), None, {}, "write"),
]


@pytest.fixture(params=[["read"], ["read", "write"], ["read", "execute"], []], ids=lambda a: "+".join(a) or "none")
def allowed(request):
    return request.param


@pytest.fixture
def jp_server_config(nb2prod_home, allowed):  # noqa: F811 - overrides the directory's fixture
    return {"ServerApp": {"jpserver_extensions": {"nb2prod": True},
                          "authorizer_class": "tests.server.authz.ActionAuthorizer"},
            "ActionAuthorizer": {"allowed": allowed}}


async def test_each_endpoint_asks_for_its_action(jp_fetch, root, allowed):
    for method, parts, body, params, action in REQUESTS:
        kwargs = {"method": method, "params": params}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        code, answer = await fetch_json(jp_fetch, "nb2prod", *parts, **kwargs)
        if action in allowed:
            assert code != 403 and code < 500, (method, parts, code, answer)
        else:
            assert code == 403, (method, parts, code, answer)
            assert f"not authorized to {action} on resource: nb2prod" in answer["error"]
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert rows == [] or code == 403
