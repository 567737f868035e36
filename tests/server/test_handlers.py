"""The REST API under /nb2prod/ against a real Jupyter server (pytest-jupyter's ``jp_fetch``)."""

from __future__ import annotations

import json

import pytest

from tests.server.conftest import fetch_json

NO_AUTH = {"Authorization": ""}


def post(body):
    return {"method": "POST", "body": json.dumps(body)}


async def test_check_returns_the_spec(jp_fetch, root):
    code, spec = await fetch_json(jp_fetch, "nb2prod", "check", **post({"path": "pipeline.ipynb"}))
    assert code == 200
    assert spec["errors"] == []
    assert list(spec["stages"])[:2] == ["load", "split"]
    assert ["load", "split"] in spec["edges"]
    assert spec["parameters"]["n_estimators"] == {"type": "int", "default": 100}
    assert all(stage["cells"] for stage in spec["stages"].values())


async def test_check_lists_validation_errors(jp_fetch, root):
    code, spec = await fetch_json(jp_fetch, "nb2prod", "check", **post({"path": "cycle.ipynb"}))
    assert code == 200
    by_message = {e["message"].split(":")[0]: e for e in spec["errors"]}
    assert by_message["the stages form a cycle"]["stage"] == "first"
    undefined = next(e for e in spec["errors"] if "'missing'" in e["message"])
    assert (undefined["cell_index"], undefined["stage"]) == (3, "third") and undefined["cell_id"]


async def test_invalid_notebook_is_a_readable_400(jp_fetch, root):
    code, body = await fetch_json(jp_fetch, "nb2prod", "check", **post({"path": "broken.ipynb"}))
    assert code == 400
    assert "not a notebook" in body["error"]
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize("body, fragment", [
    ({}, "'path' must be a non-empty string"),
    ({"path": 3}, "'path' must be a non-empty string"),
    ({"path": "pipeline.ipynb", "extra": 1}, "unknown field"),
])
async def test_check_bad_input_is_400(jp_fetch, root, body, fragment):
    code, answer = await fetch_json(jp_fetch, "nb2prod", "check", **post(body))
    assert code == 400
    assert fragment in answer["error"]


async def test_body_must_be_json_object(jp_fetch, root):
    for raw in ("{not json", "[1, 2]"):
        code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", method="POST", body=raw)
        assert code == 400, raw
        assert "request body" in answer["error"]


@pytest.mark.parametrize("method, parts, body", [
    ("GET", ("runs",), None),
    ("POST", ("runs",), {"path": "pipeline.ipynb"}),
    ("POST", ("check",), {"path": "pipeline.ipynb"}),
    ("GET", ("runs", "abc123"), None),
    ("POST", ("runs", "abc123", "cancel"), {}),
])
async def test_every_endpoint_needs_a_token(jp_fetch, root, method, parts, body):
    kwargs = {"method": method, "headers": NO_AUTH}
    if body is not None:
        kwargs["body"] = json.dumps(body)
    code, answer = await fetch_json(jp_fetch, "nb2prod", *parts, **kwargs)
    assert code == 403
    assert "error" in answer


async def test_path_escapes_are_refused(jp_fetch, root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.ipynb").write_text((root / "pipeline.ipynb").read_text())
    (root / "link.ipynb").symlink_to(outside / "secret.ipynb")
    (root / "linkdir").symlink_to(outside)
    escapes = ["../outside/secret.ipynb", "sub/../../outside/secret.ipynb", str(outside / "secret.ipynb"),
               str(root / "pipeline.ipynb"), "~/secret.ipynb", "link.ipynb", "linkdir/secret.ipynb"]
    for path in escapes:
        for endpoint in ("check", "runs"):
            code, answer = await fetch_json(jp_fetch, "nb2prod", endpoint, **post({"path": path}))
            assert code == 403, (endpoint, path, answer)
            assert answer["error"]
    code, _ = await fetch_json(jp_fetch, "nb2prod", "runs", params={"notebook": "../outside/secret.ipynb"})
    assert code == 403
    code, answer = await fetch_json(jp_fetch, "nb2prod", "check", **post({"path": "missing.ipynb"}))
    assert code == 404 and "no such file" in answer["error"]


async def test_file_options_are_confined_too(jp_fetch, root):
    body = {"path": "pipeline.ipynb", "output_notebook": "../out.ipynb"}
    code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", **post(body))
    assert code == 403
    assert "output_notebook" in answer["error"]


@pytest.mark.parametrize("extra, fragment", [
    ({"parameters": {"no_such": 1}}, "unknown parameter 'no_such'"),
    ({"parameters": {"n_estimators": "many"}}, "'n_estimators'"),
    ({"parameters": {"n_estimators": 1.5}}, "'n_estimators'"),
    ({"parameters": {"test_size": True}}, "'test_size'"),
    ({"parameters": [1]}, "parameters"),
    ({"no_cache": "yes"}, "no_cache"),
    ({"warp_speed": True}, "unknown run option"),
])
async def test_bad_run_requests_are_400(jp_fetch, root, extra, fragment):
    code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", **post({"path": "pipeline.ipynb", **extra}))
    assert code == 400, answer
    assert fragment in answer["error"]
    assert "Traceback" not in json.dumps(answer)


async def test_run_of_an_invalid_pipeline_is_400_with_the_errors(jp_fetch, root):
    code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", **post({"path": "cycle.ipynb"}))
    assert code == 400
    assert "cycle" in answer["error"]
    assert any("cycle" in e["message"] for e in answer["errors"])


async def test_unknown_run_is_404(jp_fetch, root):
    for parts, method in ((("runs", "nosuchrun000"), "GET"), (("runs", "nosuchrun000", "cancel"), "POST")):
        kwargs = {"method": method} | ({"body": "{}"} if method == "POST" else {})
        code, answer = await fetch_json(jp_fetch, "nb2prod", *parts, **kwargs)
        assert code == 404, answer
        assert "nosuchrun000" in answer["error"]


async def test_list_limit_is_checked(jp_fetch, root):
    code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", params={"limit": "lots"})
    assert code == 400 and "limit" in answer["error"]
    code, runs = await fetch_json(jp_fetch, "nb2prod", "runs", params={"limit": "5"})
    assert code == 200 and isinstance(runs, list) and len(runs) <= 5
