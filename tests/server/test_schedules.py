"""REST endpoints for schedules (thin over nb2prod.scheduling.schedules)."""

from __future__ import annotations

import json

import pytest

from tests.server.conftest import fetch_json

pytestmark = pytest.mark.usefixtures("ray_cluster")


def post(body=None, method="POST"):
    return {"method": method, "body": json.dumps(body or {})}


async def test_schedule_lifecycle_over_rest(jp_fetch, root):
    code, row = await fetch_json(jp_fetch, "nb2prod", "schedules", **post(
        {"name": "nightly", "path": "pipeline.ipynb", "cron": "0 2 * * *", "tz": "Europe/Paris",
         "parameters": {"n_estimators": "{{ scheduled_time:%d }}"}}))
    assert code == 201 and row["next_fire_times"] and row["timezone"] == "Europe/Paris"
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert code == 200 and [r["name"] for r in rows] == ["nightly"]
    code, row = await fetch_json(jp_fetch, "nb2prod", "schedules", "nightly", "pause", **post())
    assert code == 200 and row["paused"] is True
    code, fire = await fetch_json(jp_fetch, "nb2prod", "schedules", "nightly", "run-now", **post())
    assert code == 200 and fire["status"] == "running" and fire["run_id"]
    code, shown = await fetch_json(jp_fetch, "nb2prod", "schedules", "nightly", params={"history": "5"})
    assert code == 200 and [f["run_id"] for f in shown["fires"]] == [fire["run_id"]]
    code, error = await fetch_json(jp_fetch, "nb2prod", "schedules", "nightly", params={"history": "0"})
    assert code == 400 and "'history' must be an integer from 1 to 500" in error["error"]
    code, _ = await fetch_json(jp_fetch, "nb2prod", "schedules", "nightly", method="DELETE")
    assert code == 200
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert rows == []


@pytest.mark.parametrize("body, fragment", [
    ({"name": "x", "path": "pipeline.ipynb", "cron": "not cron"}, "invalid cron"),
    ({"name": "x", "path": "pipeline.ipynb", "cron": "@daily", "tz": "Atlantis/Capital"}, "unknown timezone"),
    ({"name": "x", "path": "pipeline.ipynb", "cron": "@daily", "parameters": {"nope": "1"}}, "unknown parameter"),
    ({"name": "x", "path": "../outside.ipynb", "cron": "@daily"}, "may not contain"),
])
async def test_bad_schedules_are_refused(jp_fetch, root, body, fragment):
    code, error = await fetch_json(jp_fetch, "nb2prod", "schedules", **post(body))
    assert 400 <= code < 500 and fragment in error["error"]
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert rows == []


async def test_schedules_need_a_token(jp_fetch, root):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as exc:
        await jp_fetch("nb2prod", "schedules", headers={"Authorization": ""})
    assert exc.value.code == 403


async def test_schedule_preview_describes_the_expression_and_lists_fire_times(jp_fetch, root):
    code, preview = await fetch_json(jp_fetch, "nb2prod", "schedule-preview",
                                     params={"cron": "30 2 * * 1-5", "tz": "Europe/Paris", "count": "3"})
    assert code == 200 and preview["description"] == "At 02:30, Monday through Friday"
    assert len(preview["next_fire_times_local"]) == 3
    assert all(t[11:19] == "02:30:00" for t in preview["next_fire_times_local"])  # wall-clock time in Paris
    code, error = await fetch_json(jp_fetch, "nb2prod", "schedule-preview", params={"cron": "61 * * * *"})
    assert code == 400 and "invalid cron expression" in error["error"]
    code, rows = await fetch_json(jp_fetch, "nb2prod", "schedules")
    assert rows == []


async def test_schedulers_endpoint_warns_exactly_when_none_is_alive(jp_fetch, root):
    code, body = await fetch_json(jp_fetch, "nb2prod", "schedulers")
    assert code == 200 and (body["warning"] is None) == bool(body["schedulers"])
