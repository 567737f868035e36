"""``ray start`` that does not race its own agents: ``python -m nb2prod.runner.raystart start ARGS...``.

Ray 2.6x's raylet gives its dashboard and runtime-env agents a fixed 15 s to start and write the ports they
listen on, and aborts the whole node otherwise (ray-project/ray#65983); with ``ray[default]`` the dashboard agent
alone imports for ~5 s of CPU, so a busy 2-core machine misses that wait. Here every agent port is chosen by the
caller (on the command line) and written for the raylet up front, and the node gets minutes rather than 30 s to
register with the GCS. Everything else is Ray's own ``ray start``. Used for nb2prod's embedded cluster and the
test clusters.

Only ``start`` runs here, so the ``ray`` CLI's other command groups (serve, job, state), whose imports are ~1.4 s of
CPU, are not loaded. With ``--lean`` (the embedded cluster) the head also starts neither a Ray Client server nor,
under ``--include-dashboard=false``, the dashboard head (which then loads no module, yet ``ray start`` waits for it):
~2.7 s of CPU and ~2 s of a cold start that nb2prod has no use for (it connects as a driver; detached runs on the
embedded cluster are local processes, not Ray jobs).
"""

from __future__ import annotations

import sys
import time

REGISTER_WAIT_S = 150.0
LEAN = "--lean"
UNUSED_CLI_GROUPS = ("ray.serve.scripts", "ray.dashboard.modules.job.cli", "ray.util.state.state_cli")
AGENT_PORT_FLAGS = ("--dashboard-agent-grpc-port", "--dashboard-agent-listen-port", "--runtime-env-agent-port",
                    "--metrics-export-port")


def _patch(lean: bool) -> None:
    import ray._private.node as node
    import ray._private.services as services
    from ray._raylet import (DASHBOARD_AGENT_LISTEN_PORT_NAME, METRICS_AGENT_PORT_NAME, METRICS_EXPORT_PORT_NAME,
                             RUNTIME_ENV_AGENT_PORT_NAME, persist_port)

    start_raylet = node.Node.start_raylet

    def start_raylet_with_known_ports(self, *args, **kwargs):
        params = self._ray_params
        for name, port in ((METRICS_AGENT_PORT_NAME, params.metrics_agent_port),
                           (DASHBOARD_AGENT_LISTEN_PORT_NAME, params.dashboard_agent_listen_port),
                           (RUNTIME_ENV_AGENT_PORT_NAME, params.runtime_env_agent_port),
                           (METRICS_EXPORT_PORT_NAME, params.metrics_export_port)):
            if port:
                persist_port(self._session_dir, self._node_id, name, port)
        return start_raylet(self, *args, **kwargs)

    get_node = services.get_node

    def patient_get_node(*args, **kwargs):
        deadline = time.monotonic() + REGISTER_WAIT_S
        while True:
            try:
                return get_node(*args, **kwargs)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    node.Node.start_raylet = start_raylet_with_known_ports
    services.get_node = patient_get_node
    if lean:
        node.Node.start_ray_client_server = lambda self: None
        start_api_server = node.Node.start_api_server

        def start_api_server_if_used(self, *, include_dashboard, raise_on_failure):
            if include_dashboard is not False:
                start_api_server(self, include_dashboard=include_dashboard, raise_on_failure=raise_on_failure)

        node.Node.start_api_server = start_api_server_if_used


def main() -> None:
    args = sys.argv[1:]
    lean = LEAN in args
    try:
        _patch(lean)
    except (ImportError, AttributeError):  # another Ray: its own `ray start`, with its own waits
        pass
    for name in UNUSED_CLI_GROUPS:
        sys.modules[name] = None  # type: ignore[assignment]  # the ray CLI skips a group it cannot import
    from ray.scripts.scripts import main as ray_main

    sys.argv = ["ray", *(a for a in args if a != LEAN)]
    ray_main()


if __name__ == "__main__":
    main()
