"""Issue 14 over REST: every path-valued option confined (runs and schedules), no 500 for a user's mistake, a
500 that carries no internals, and schedules that one bad row cannot break."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest

from tests.server.conftest import fetch_json


def post(body):
    return {"method": "POST", "body": json.dumps(body)}


def schedule(**extra):
    return {"name": "confined", "path": "pipeline.ipynb", "cron": "@daily", **extra}


@pytest.fixture
def outside(tmp_path_factory):
    """A directory outside both the server root and NB2PROD_HOME."""
    return tmp_path_factory.mktemp("outside")


def escaping_options(outside):
    return [
        {"output_notebook": "../out.ipynb"}, {"output_notebook": str(outside / "out.ipynb")},
        {"requirements": "/etc/hostname"}, {"cache_dir": "../../cache"}, {"cache_dir": str(outside)},
        {"tracking_uri": f"sqlite:///{outside / 'mlflow.db'}"}, {"tracking_uri": "sqlite:///../mlflow.db"},
        {"tracking_uri": f"file://{outside / 'mlruns'}"}, {"tracking_uri": f"file:{outside / 'mlruns'}"},
        {"tracking_uri": str(outside / "mlruns")}, {"tracking_uri": "../mlruns"},
        {"tracking_uri": "sqlite://evil.host/x.db"}, {"pip": [str(outside / "pkg")]}, {"pip": ["-r", "/etc/hostname"]},
        {"pip": [f"pkg @ file://{outside}"]}, {"pip": [f"numpy\n-e {outside}"]}, {"pip": ["numpy --no-deps"]},
    ]


async def test_schedule_options_are_confined_like_runs(jp_fetch, root, outside):
    for options in escaping_options(outside):
        code, answer = await fetch_json(jp_fetch, "nb2prod", "schedules", **post(schedule(options=options)))
        assert code == 403, (options, code, answer)
        assert next(iter(options)) in answer["error"]
        code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", **post({"path": "pipeline.ipynb", **options}))
        assert code == 403, (options, code, answer)
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert rows == []
    assert list(outside.iterdir()) == []


async def test_file_tracking_uris_inside_the_root_or_home_are_kept_absolute(jp_fetch, root, nb2prod_home):
    kept = {"sqlite:///sub/mlflow.db": f"sqlite:///{root.resolve() / 'sub' / 'mlflow.db'}",
            f"sqlite:///{nb2prod_home / 'other.db'}": f"sqlite:///{nb2prod_home.resolve() / 'other.db'}",
            "mlruns": str(root.resolve() / "mlruns"), "http://mlflow.example:5000": "http://mlflow.example:5000"}
    (root / "out").mkdir()  # an output notebook's directory must exist when the schedule is added
    try:
        for i, (uri, stored) in enumerate(kept.items()):
            code, row = await fetch_json(jp_fetch, "nb2prod", "schedules", **post(
                schedule(name=f"kept{i}", options={"tracking_uri": uri, "output_notebook": "out/run.ipynb"})))
            assert code == 201, (uri, row)
            assert row["options"]["tracking_uri"] == stored
            assert row["options"]["output_notebook"] == str(root.resolve() / "out" / "run.ipynb")
    finally:
        for i in range(len(kept)):
            await fetch_json(jp_fetch, "nb2prod", "schedules", f"kept{i}", method="DELETE")


@pytest.mark.parametrize("body, fragment", [
    ({"max_concurrent": "2"}, "'max_concurrent' must be an integer"),
    ({"max_concurrent": 10**30}, "'max_concurrent' must be from 1"),
    ({"retries": True}, "'retries' must be an integer"),
    ({"timeout_s": "soon"}, "'timeout_s' must be"),
    ({"catchup_max": None}, "'catchup_max' must be an integer"),
    ({"notify_on_success": "yes"}, "'notify_on_success' must be true or false"),
    ({"parameters": [1]}, "'parameters' must be an object"),
    ({"options": 3}, "run options must be a JSON object"),
    ({"tz": 5}, "'tz' must be a string"),
    ({"name": 5}, "schedule name 5"),
    ({"name": "two words"}, "schedule name 'two words'"),
    ({"name": "a/b"}, "schedule name 'a/b'"),
    ({"cron": 5}, "must be strings"),
    ({"cron": "R 2 * * *"}, "random (R) and hashed (H) fields are not supported"),
    ({"cron": "0 0 * * 5L"}, "invalid cron expression"),
    ({"parameters": {"n_estimators": "{{ scheduled_time + 99999999999d }}"}}, "offset 99999999999d is out of range"),
    ({"options": {"resume_from": "abc"}}, "resume_from cannot be part of a schedule"),
])
async def test_mistyped_schedule_fields_are_400(jp_fetch, root, body, fragment):
    code, answer = await fetch_json(jp_fetch, "nb2prod", "schedules", **post(schedule(**body)))
    assert code == 400, answer
    assert fragment in answer["error"]
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert rows == []


async def test_user_mistakes_are_4xx_with_a_message(jp_fetch, root):
    for limit in ("²", "1e3", "-1", "0", "99999999999999999999", "5x"):
        code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", params={"limit": limit})
        assert code == 400 and "'limit' must be an integer" in answer["error"], (limit, answer)
    code, answer = await fetch_json(jp_fetch, "nb2prod", "schedules", "nightly", **post({}))
    assert code == 405 and ".../pause, .../resume or .../run-now" in answer["error"]
    code, answer = await fetch_json(jp_fetch, "nb2prod", "schedules", "nosuch", "pause", **post({}))
    assert code == 404 and "no schedule named 'nosuch'" in answer["error"]


@pytest.mark.parametrize("notebook, fragment", [
    ({"nbformat": 4, "cells": [{"cell_type": "code", "source": 5, "metadata": {}}]}, "'source' must be"),
    ({"nbformat": 4, "cells": [{"cell_type": "code", "source": "x = 1", "metadata": {"tags": [1]}}]}, "tags"),
    ({"nbformat": 4, "cells": [{"cell_type": "code", "source": "x", "metadata": {"tags": "stage:a"}}]}, "tags"),
    ({"nbformat": 4, "cells": [{"cell_type": "code", "source": "x", "metadata": []}]}, "'metadata'"),
    ({"nbformat": 4, "cells": ["x = 1"]}, "not an object"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
async def test_malformed_notebooks_are_400(jp_fetch, root, notebook, fragment):
    (root / "malformed.ipynb").write_text(notebook if isinstance(notebook, str) else json.dumps(notebook))
    for endpoint in ("check", "runs"):
        code, answer = await fetch_json(jp_fetch, "nb2prod", endpoint, **post({"path": "malformed.ipynb"}))
        assert code == 400 and fragment in answer["error"], (endpoint, answer)


async def test_deeply_nested_code_is_a_cell_error(jp_fetch, root):
    cells = [{"cell_type": "code", "source": "x = 1" + " + 1" * 5000, "metadata": {"tags": ["stage:a"]}}]
    (root / "deep.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    code, spec = await fetch_json(jp_fetch, "nb2prod", "check", **post({"path": "deep.ipynb"}))
    assert code == 200 and spec["errors"][0]["cell_index"] == 0


async def test_a_500_carries_no_internals(jp_fetch, root, tmp_path, monkeypatch):
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a SQLite database" * 100)
    monkeypatch.setenv("NB2PROD_DATABASE_URL", f"sqlite:///{broken}")
    for parts in (("runs",), ("schedules",)):
        code, answer = await fetch_json(jp_fetch, "nb2prod", *parts)
        assert code == 500
        assert answer == {"error": "internal error in nb2prod; the server log has the details"}


async def test_a_bad_stored_row_breaks_no_list_and_stays_removable(jp_fetch, root, http_server_client, jp_base_url,
                                                                   jp_auth_header):
    from nb2prod.scheduling.models import ScheduleRow
    from nb2prod.store.db import session

    t = datetime(2026, 1, 1)
    with session() as s, s.begin():  # rows an older nb2prod stored: a random-minute cron, a name with a space
        for name, cron in (("legacy random", "R 2 * * *"), ("legacy/slash", "0 2 * * *")):
            s.add(ScheduleRow(name=name, notebook=str(root / "pipeline.ipynb"), cron=cron, timezone="UTC",
                              parameters={}, options={}, created_at=t, considered_until=t, next_fire_at=t))
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert code == 200 and [r["name"] for r in rows] == ["legacy random", "legacy/slash"]
    assert "random (R)" in rows[0]["problem"] and rows[0]["next_fire_times"] == []
    assert rows[1]["problem"] is None and rows[1]["next_fire_times"]
    for name in ("legacy%20random", "legacy%2Fslash"):  # URL-encoded as the Lab panel sends them
        url = f"{jp_base_url.rstrip('/')}/nb2prod/schedules/{name}"
        for method in ("GET", "DELETE"):
            response = await http_server_client.fetch(url, method=method, headers=jp_auth_header, raise_error=False)
            assert response.code == 200, (name, method, response.body)
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert rows == []


async def test_bodies_and_paths_no_file_can_have_are_400(jp_fetch, root):
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    for path, fragment in (("loop-a", "a symlink loop"), ("loop-a/x.ipynb", "a symlink loop"),
                           ("x" * 5000, "File name too long"), ("\ud800.ipynb", "characters the file system cannot")):
        for endpoint, body in (("check", {"path": path}), ("runs", {"path": path}), ("schedules", schedule(path=path))):
            code, answer = await fetch_json(jp_fetch, "nb2prod", endpoint, **post(body))
            assert code == 400 and fragment in answer["error"], (endpoint, path[:20], answer)
        if "\ud800" not in path:  # a URL's query cannot carry a lone surrogate
            code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", params={"notebook": path})
            assert code == 400 and fragment in answer["error"], (path[:20], answer)
    for raw, fragment in (("[" * 100_000 + "]" * 100_000, "nested too deeply"),
                          ('{"path": "pipeline.ipynb", "drift_threshold": Infinity}', "Infinity is not a JSON number"),
                          ('{"path": "pipeline.ipynb", "parameters": {"test_size": NaN}}', "NaN is not a JSON number")):
        code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", method="POST", body=raw)
        assert code == 400 and fragment in answer["error"], answer
    code, answer = await fetch_json(jp_fetch, "nb2prod", "runs", **post({"path": "pipeline.ipynb", "resume_from": "nope"}))
    assert code == 400 and "--resume: no run 'nope'" in answer["error"], answer
    code, runs = await fetch_json(jp_fetch, "nb2prod", "runs", params={"notebook": "pipeline.ipynb"})
    assert code == 200 and runs == []  # none of these started a run


async def test_a_schedule_removed_by_several_clients_at_once_is_removed_once(jp_fetch, root):
    code, _ = await fetch_json(jp_fetch, "nb2prod", "schedules", **post(schedule(name="once")))
    assert code == 201
    codes = sorted(c for c, _ in await asyncio.gather(*[
        fetch_json(jp_fetch, "nb2prod", "schedules", "once", method="DELETE") for _ in range(6)]))
    assert codes == [200] + [404] * 5, codes
