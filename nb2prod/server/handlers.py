"""REST handlers under ``/nb2prod/``: thin adapters over :mod:`nb2prod.api`.

Every handler is ``@tornado.web.authenticated`` (403 without a token), then ``@authorized`` by the server's
Authorizer on resource ``nb2prod`` (403 otherwise): reading is ``read``, starting / cancelling runs and run-now
``execute``, adding / pausing / resuming / removing schedules ``write``. Handlers inherit the server's XSRF checks
from ``APIHandler``. Errors are mapped in exactly one place, :meth:`Nb2ProdHandler.write_error`: user errors
(``Nb2ProdError``) become 4xx with ``{"error": message, ...}``; anything else is logged with its traceback and
answered 500 with a fixed message that carries no internals. Calls into the api run on a thread so the event
loop stays free.
"""

from __future__ import annotations

import functools
import json
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.ioloop import IOLoop
from traitlets import Bool, Unicode
from traitlets.config import LoggingConfigurable

from nb2prod.contracts import mlflow_link
from nb2prod.errors import Nb2ProdError, RunNotFound, UsageError
from nb2prod.secret import redact_uri
from nb2prod.server.paths import confine, confine_options, relative

RESOURCE = "nb2prod"  # the Authorizer's resource name for every nb2prod endpoint
RUN_ID = r"(?P<run_id>[A-Za-z0-9_.-]+)"
# Any URL-encoded name reaches a schedule: names made before the name rule stay listable and removable;
# new names follow ``schedules.NAME_RULE``, which every name it allows matches here.
SCHEDULE = r"(?P<name>[^/]+)"
MAX_LIMIT = 500
INTERNAL_ERROR = "internal error in nb2prod; the server log has the details"


class Nb2ProdServer(LoggingConfigurable):
    """Server-side settings of the nb2prod extension (``c.Nb2ProdServer.*``)."""

    run_scheduler = Bool(
        False, config=True,
        help="Also run nb2prod's scheduler inside this server (same store as `nb2prod scheduler`; "
             "several schedulers never fire a time twice).",
    )
    mlflow_ui_url = Unicode(
        "", config=True,
        help="Base URL of the MLflow UI (e.g. http://localhost:5000); run records then carry an "
             "``mlflow_url`` link to the run's page.",
    )

    def mlflow_url(self, record: dict[str, Any]) -> str | None:
        return mlflow_link(record, self.mlflow_ui_url or None)


def http_status(exc: BaseException | None, default: int) -> int:
    """The HTTP status for an exception raised by a handler."""
    if isinstance(exc, web.HTTPError):
        return exc.status_code
    if isinstance(exc, Nb2ProdError):
        return getattr(exc, "http_status", HTTPStatus.NOT_FOUND if isinstance(exc, RunNotFound) else 400)
    return default


def _not_json(constant: str) -> None:
    """``NaN``, ``Infinity`` and ``-Infinity``: Python's json reads them; JSON has no such numbers."""
    raise ValueError(f"{constant} is not a JSON number")


class Nb2ProdHandler(APIHandler):
    """Base of the nb2prod handlers: JSON body parsing, the api on a thread, the one error mapper."""

    auth_resource = RESOURCE

    @property
    def nb2prod(self) -> Nb2ProdServer:
        return self.settings["nb2prod_server"]

    @property
    def root(self) -> Path:
        return Path(self.settings.get("server_root_dir") or ".").expanduser()

    def json_body(self, allowed: set[str] | None = None) -> dict[str, Any]:
        try:
            data = json.loads(self.request.body or b"{}", parse_constant=_not_json)
        except ValueError as exc:
            raise UsageError(f"the request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise UsageError("the request body is not valid JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise UsageError("the request body must be a JSON object")
        if allowed is not None and set(data) - allowed:
            raise UsageError(f"unknown field(s): {', '.join(sorted(set(data) - allowed))}; "
                             f"known: {', '.join(sorted(allowed))}")
        return data

    def int_argument(self, name: str, default: int, high: int) -> int:
        """An integer query argument from 1 to ``high``; a UsageError (400) otherwise."""
        text = self.get_query_argument(name, str(default))
        if not re.fullmatch(r"[0-9]{1,9}", text) or not 1 <= int(text) <= high:
            raise UsageError(f"{name!r} must be an integer from 1 to {high}, got {text!r}")
        return int(text)

    async def blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` (file reads, the SQLite run store, spawning the runner) off the event loop."""
        return await IOLoop.current().run_in_executor(None, functools.partial(fn, *args, **kwargs))

    def present(self, record: dict[str, Any] | None, run_id: str = "") -> dict[str, Any]:
        """A run record for the browser: adds the root-relative ``path`` and the MLflow UI link."""
        if record is None:
            raise RunNotFound(f"no run {run_id!r}")
        options = record.get("options") or {}
        options = {**options, "tracking_uri": redact_uri(options.get("tracking_uri"))} if options else options
        return {**record, "options": options, "path": relative(self.root, record.get("notebook")),
                "mlflow_url": self.nb2prod.mlflow_url(record)}

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """The one place exceptions become HTTP answers."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        status = http_status(exc, status_code)
        if isinstance(exc, Nb2ProdError) and status < 500:
            body = exc.to_dict()
        elif isinstance(exc, web.HTTPError):
            body = {"error": exc.log_message or exc.reason or HTTPStatus(status).phrase}
        elif exc is not None or status >= 500:  # logged with its traceback by log_exception; never sent
            body = {"error": INTERNAL_ERROR}
        else:
            body = {"error": self._reason or "error"}
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, default=str))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, Nb2ProdError) and http_status(value, 400) >= 500:  # the operator's: logged, not sent
            self.log.error("nb2prod %s %s -> %s: %s", self.request.method, self.request.path,
                           http_status(value, 400), value.message)
        elif isinstance(value, Nb2ProdError):  # a user error: one line, no traceback
            self.log.info("nb2prod %s %s -> %s: %s", self.request.method, self.request.path,
                          http_status(value, 400), value.message.splitlines()[0] if value.message else "")
        else:
            super().log_exception(typ, value, tb)


class CheckHandler(Nb2ProdHandler):
    """``POST /nb2prod/check {path}`` → the pipeline spec, validation errors included (a read)."""

    @web.authenticated
    @authorized("read", resource=RESOURCE)
    async def post(self) -> None:
        from nb2prod import api

        body = self.json_body({"path"})
        path = confine(self.root, body.get("path"))
        self.reply(await self.blocking(api.check, path))


class RunsHandler(Nb2ProdHandler):
    """``GET /nb2prod/runs[?notebook=PATH&limit=N]``; ``POST /nb2prod/runs {path, parameters, ...options}``."""

    @web.authenticated
    @authorized("read", resource=RESOURCE)
    async def get(self) -> None:
        from nb2prod import api

        notebook = self.get_query_argument("notebook", None)
        if notebook is not None:
            notebook = str(confine(self.root, notebook, field="notebook", must_exist=False))
        runs = await self.blocking(api.list_runs, notebook, self.int_argument("limit", 50, MAX_LIMIT))
        self.reply([self.present(r) for r in runs])

    @web.authenticated
    @authorized("execute", resource=RESOURCE)
    async def post(self) -> None:
        from nb2prod import api
        from nb2prod.contracts import RunOptions
        from nb2prod.home import home_dir

        body = self.json_body()
        path = confine(self.root, body.pop("path", None))
        options = RunOptions.from_dict(confine_options(self.root, body, home_dir()))
        run_id = await self.blocking(api.start_run, path, options)
        self.set_header("Location", url_path_join(self.base_url, "nb2prod", "runs", run_id))
        self.reply({"id": run_id}, status=201)


class RunHandler(Nb2ProdHandler):
    """``GET /nb2prod/runs/{id}`` (an nb2prod run id or MLflow run id) → the run record."""

    @web.authenticated
    @authorized("read", resource=RESOURCE)
    async def get(self, run_id: str) -> None:
        from nb2prod import api

        self.reply(self.present(await self.blocking(api.get_run, run_id), run_id))


class CancelHandler(Nb2ProdHandler):
    """``POST /nb2prod/runs/{id}/cancel`` → the run record (its runner stops within a heartbeat)."""

    @web.authenticated
    @authorized("execute", resource=RESOURCE)
    async def post(self, run_id: str) -> None:
        from nb2prod import api

        self.reply(self.present(await self.blocking(api.cancel_run, run_id), run_id))


class SchedulesHandler(Nb2ProdHandler):
    """``GET /nb2prod/schedules``; ``POST /nb2prod/schedules {name, path, cron, tz, parameters, mode, ...}``."""

    FIELDS = {"name", "path", "cron", "tz", "parameters", "mode", "options", "catchup", "catchup_max",
              "max_concurrent", "timeout_s", "retries", "notify_url", "notify_on_success"}

    @web.authenticated
    @authorized("read", resource=RESOURCE)
    async def get(self) -> None:
        from nb2prod.scheduling import schedules

        self.reply(await self.blocking(schedules.list_all))

    @web.authenticated
    @authorized("write", resource=RESOURCE)
    async def post(self) -> None:
        from nb2prod.home import home_dir
        from nb2prod.scheduling import schedules

        body = self.json_body(self.FIELDS)
        path = confine(self.root, body.pop("path", None))
        if "options" in body:
            body["options"] = confine_options(self.root, body["options"], home_dir())
        name, cron = body.pop("name", None), body.pop("cron", None)
        self.reply(await self.blocking(schedules.add, name, str(path), cron, **body), status=201)


class SchedulePreviewHandler(Nb2ProdHandler):
    """``GET /nb2prod/schedule-preview?cron=EXPR&tz=ZONE[&count=N]``: the expression in words and its next fire
    times (400 with the reason when the expression or zone is invalid); stores nothing."""

    @web.authenticated
    @authorized("read", resource=RESOURCE)
    async def get(self) -> None:
        from nb2prod.scheduling import schedules

        cron, tz = self.get_query_argument("cron", "").strip(), self.get_query_argument("tz", "UTC")
        count = self.int_argument("count", 5, schedules.PREVIEW_MAX)
        self.reply(await self.blocking(schedules.preview, cron, tz, count))


class SchedulersHandler(Nb2ProdHandler):
    """``GET /nb2prod/schedulers``: the live schedulers of the store and a warning when none runs."""

    @web.authenticated
    @authorized("read", resource=RESOURCE)
    async def get(self) -> None:
        from nb2prod.scheduling import schedules

        self.reply(await self.blocking(schedules.schedulers))


class ScheduleHandler(Nb2ProdHandler):
    """``GET /nb2prod/schedules/{name}[?history=N]`` (the schedule and its N newest fires, default 50);
    ``DELETE`` it."""

    @web.authenticated
    @authorized("read", resource=RESOURCE)
    async def get(self, name: str) -> None:
        from nb2prod.scheduling import schedules

        self.reply(await self.blocking(schedules.show, name, self.int_argument("history", 50, schedules.HISTORY_MAX)))

    @web.authenticated
    @authorized("write", resource=RESOURCE)
    async def delete(self, name: str) -> None:
        from nb2prod.scheduling import schedules

        await self.blocking(schedules.remove, name)
        self.reply({"removed": name})

    @web.authenticated
    async def post(self, name: str) -> None:
        raise web.HTTPError(405, "POST to a schedule needs an action: .../pause, .../resume or .../run-now")


class SchedulePauseHandler(Nb2ProdHandler):
    """``POST /nb2prod/schedules/{name}/(pause|resume)`` → the schedule."""

    @web.authenticated
    @authorized("write", resource=RESOURCE)
    async def post(self, name: str, action: str) -> None:
        from nb2prod.scheduling import schedules

        await self.blocking(schedules.set_paused, name, action == "pause")
        self.reply(await self.blocking(schedules.show, name, 1))


class RunNowHandler(Nb2ProdHandler):
    """``POST /nb2prod/schedules/{name}/run-now`` → the fire it started."""

    @web.authenticated
    @authorized("execute", resource=RESOURCE)
    async def post(self, name: str) -> None:
        from nb2prod.scheduling import schedules

        self.reply(await self.blocking(schedules.run_now, name))


def setup_handlers(serverapp: Any) -> None:
    web_app = serverapp.web_app
    web_app.settings["nb2prod_server"] = Nb2ProdServer(parent=serverapp, log=serverapp.log)
    base = web_app.settings["base_url"]
    routes = [
        ("check", CheckHandler),
        ("runs", RunsHandler),
        (f"runs/{RUN_ID}", RunHandler),
        (f"runs/{RUN_ID}/cancel", CancelHandler),
        ("schedules", SchedulesHandler),
        ("schedule-preview", SchedulePreviewHandler),
        ("schedulers", SchedulersHandler),
        (f"schedules/{SCHEDULE}", ScheduleHandler),
        (f"schedules/{SCHEDULE}/(?P<action>pause|resume)", SchedulePauseHandler),
        (f"schedules/{SCHEDULE}/run-now", RunNowHandler),
    ]
    web_app.add_handlers(".*$", [(url_path_join(base, "nb2prod", route), handler) for route, handler in routes])
    serverapp.log.info("nb2prod: REST API at %s", url_path_join(base, "nb2prod"))
    if web_app.settings["nb2prod_server"].run_scheduler:
        from nb2prod.scheduling.loop import start_in_server

        start_in_server()
        serverapp.log.info("nb2prod: scheduler running inside the server")
