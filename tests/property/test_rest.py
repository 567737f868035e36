"""For any body and query string, the REST API answers a 2xx or a 4xx with a message: never a 500, never a
traceback; and nothing is written outside NB2PROD_HOME and the server root.

Hypothesis drives a blocking HTTP client on a worker thread while the server runs on the test's event loop.
``POST /runs`` bodies name notebooks that are not valid pipelines (a valid one would start a real run; runs are
covered by tests/server/test_runs.py): every check before the run starts still applies to them."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from tests.property.conftest import BOUNDED, crons, files_outside, json_values, names, paths

OPTION_FIELDS = ["parameters", "ray_address", "tracking_uri", "experiment", "output_notebook", "log_output",
                 "no_cache", "force", "stages", "downstream", "gpu_fallback", "secrets", "env", "cache_dir", "pip",
                 "requirements", "colour"]
option_values = json_values | paths | st.sampled_from(
    ["sqlite:///x.db", "sqlite:////tmp/x.db", "file:///tmp/x", "http://h:5000", "mlruns", "../x", ["-r", "/etc/x"],
     ["token"], ["token=ENV"], {"n_estimators": 5}, {"n_estimators": "x"}])
options = st.dictionaries(st.sampled_from(OPTION_FIELDS), option_values, max_size=4)
schedule_bodies = st.fixed_dictionaries({}, optional={
    "name": names | json_values, "path": paths | json_values, "cron": crons | json_values,
    "tz": st.sampled_from(["UTC", "Europe/Paris", "Atlantis/Capital", "", "../../etc"]) | json_values,
    "parameters": st.dictionaries(st.sampled_from(["n_estimators", "test_size", "nope"]), json_values, max_size=2)
    | json_values,
    "mode": st.sampled_from(["pipeline", "notebook", "batch"]) | json_values,
    "options": options | json_values, "catchup": st.sampled_from(["skip", "latest", "all", "x"]) | json_values,
    "catchup_max": json_values, "max_concurrent": json_values, "timeout_s": json_values, "retries": json_values,
    "notify_url": st.sampled_from(["http://h/x", "file:///etc/passwd"]) | json_values,
    "notify_on_success": json_values, "extra": json_values})
run_bodies = st.builds(lambda path, opts: {"path": path, **opts},
                       st.sampled_from(["cycle.ipynb", "broken.ipynb", "missing.ipynb", "../outside/x.ipynb",
                                        "/etc/passwd", ""]) | json_values, options)
raw_bodies = st.binary(max_size=40) | st.text(max_size=40).map(str.encode)
queries = st.dictionaries(st.sampled_from(["limit", "notebook", "cron", "tz", "count", "history"]),
                          st.text(max_size=12) | st.integers().map(str), max_size=3)
GETS = ["runs", "schedules", "schedule-preview", "schedulers", "runs/nosuchrun000", "schedules/nosuch"]


class Client:
    """A blocking client of the test server (used from Hypothesis' thread)."""

    def __init__(self, port: int, base_url: str, headers: dict[str, str]) -> None:
        self.base, self.headers = f"http://127.0.0.1:{port}{base_url}nb2prod/", headers

    def __call__(self, method: str, path: str, body: bytes | None = None, query: dict | None = None):
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(url, data=body, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                code, text = response.status, response.read()
        except urllib.error.HTTPError as exc:
            code, text = exc.code, exc.read()
        answer = json.loads(text or b"null")
        assert code < 500, (method, path, body, query, code, answer)
        if code >= 400:
            assert isinstance(answer, dict) and isinstance(answer.get("error"), str) and answer["error"], answer
            assert "Traceback" not in json.dumps(answer)
        return code, answer


def quote(name: str) -> str:
    return urllib.parse.quote(name, safe="") or "%20"


def properties(client: Client, root: Path, home: Path) -> None:
    def inside(path: str | None) -> bool:
        if not path:
            return True
        real = Path(path.removeprefix("sqlite:///").removeprefix("file://")).resolve()
        return any(real == b or b in real.parents for b in (root.resolve(), home.resolve())) or "://" in path

    @BOUNDED
    @given(schedule_bodies)
    @example({"name": "r", "path": "pipeline.ipynb", "cron": "R 2 * * *"})
    @example({"name": "r", "path": "pipeline.ipynb", "cron": "@daily", "max_concurrent": "2"})
    @example({"name": "r", "path": "pipeline.ipynb", "cron": "@daily", "options": {"output_notebook": "../x.ipynb"}})
    def add_schedule(body):
        code, answer = client("POST", "schedules", json.dumps(body).encode())
        if code == 201:
            stored = answer["options"]
            assert all(inside(stored.get(k)) for k in ("output_notebook", "requirements", "cache_dir",
                                                       "tracking_uri")), stored
            client("DELETE", "schedules/" + quote(answer["name"]))

    @BOUNDED
    @given(run_bodies)
    def start_run(body):
        code, answer = client("POST", "runs", json.dumps(body).encode())
        assert code != 201, answer  # none of these notebooks is a valid pipeline

    @BOUNDED
    @given(st.sampled_from(["runs", "schedules", "check", "runs/x/cancel", "schedules/x/pause"]), raw_bodies)
    def raw(path, body):
        client("POST", path, body)

    @BOUNDED
    @given(st.sampled_from(GETS), queries)
    @example("runs", {"limit": "²"})
    def query(path, params):
        client("GET", path, query=params)

    @BOUNDED
    @given(names, st.sampled_from(["GET", "DELETE", "POST pause", "POST resume", "POST run-now", "POST"]))
    @example("nightly", "POST")
    def by_name(name, action):
        method, _, verb = action.partition(" ")
        client(method, "schedules/" + quote(name) + (f"/{verb}" if verb else ""), b"{}" if method == "POST" else None)

    for prop in (add_schedule, start_run, raw, query, by_name):
        prop()


async def test_rest_answers_any_input_with_2xx_or_4xx(jp_fetch, root, nb2prod_home, http_server_port, jp_base_url,
                                                      jp_auth_header, basetemp):
    (basetemp / "outside").mkdir(exist_ok=True)
    before = files_outside(basetemp, root, nb2prod_home)
    client = Client(http_server_port[1], jp_base_url, jp_auth_header)
    await asyncio.get_running_loop().run_in_executor(None, properties, client, root, nb2prod_home)
    assert files_outside(basetemp, root, nb2prod_home) == before
    schedules = await jp_fetch("nb2prod", "schedules")
    assert json.loads(schedules.body) == []
