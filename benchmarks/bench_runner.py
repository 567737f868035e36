"""Runner and cache benchmarks, measured as a user meets them: a fresh `nb2prod run` process per run, on
nb2prod's embedded cluster and on a cluster started with `ray start --head` (as users start theirs), side by side.

    python benchmarks/bench_runner.py [--repeat 3] [--out benchmarks/results_runner.md]

Uses its own NB2PROD_HOME (benchmarks/out/home-*), 2 CPUs per cluster; the `ray start` cluster is started
and stopped by the benchmark (own temp dir, token auth, Ray's default system config).
Targets (issue 15): one-stage run <= 1.5 s; per-stage overhead <= 20 ms; example pipeline <= 0.5x the
papermill CLI; 400 MB hand-off <= 0.5 s added; cold first run <= 12 s; the `ray start` cluster within
1.5x of the embedded one on each. Cache: no-change rerun <= 0.1x the full run; rerun after editing the last
stage <= that stage's time + 0.5 s; cache lookup <= 5 ms per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.procs import stop_group  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
EXAMPLE = ROOT / "example_notebooks" / "pipeline.ipynb"


def write_nb(path: Path, cells: list[tuple[str, list[str]]]) -> Path:
    nb = new_notebook(cells=[new_code_cell(src, metadata={"tags": tags}) for src, tags in cells],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)
    return path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, dict | None]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("{")), None)
    return wall, json.loads(line) if line else None


def median(fn, repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _home(name: str) -> dict[str, str]:
    home = OUT / f"home-{name}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {**os.environ, "NB2PROD_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
           "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    return env


def start_ray(env: dict[str, str]) -> tuple[subprocess.Popen, dict[str, str]]:
    """`ray start --head --block` in its own session (2 CPUs, own temp dir, token auth); the client env."""
    from nb2prod.runner.cluster import agent_ports

    token = Path(env["NB2PROD_HOME"]) / "ray-token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = _free_port()
    log = Path(env["NB2PROD_HOME"]) / "ray-start.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nb2prod.runner.raystart", "start", "--head", "--block",
             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
             "--disable-usage-stats", f"--temp-dir=/tmp/nb2prod-bench-{os.getpid()}", *agent_ports(),
             f"--ray-client-server-port={_free_port()}",
             f"--dashboard-port={_free_port()}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None:
            raise SystemExit(f"ray start failed:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)
    return proc, {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}


def stop_ray(proc: subprocess.Popen) -> None:
    stop_group(proc, grace_s=3)
    shutil.rmtree(f"/tmp/nb2prod-bench-{os.getpid()}", ignore_errors=True)


CHAIN = 41  # stages of the per-stage chain: a fresh run's ±0.3 s spread shrinks to ±8 ms per stage


def measure(env: dict[str, str], work: Path, repeat: int) -> dict[str, float]:
    """Every warm measure on the cluster ``env`` points at."""
    def run(*args: str) -> tuple[float, dict | None]:
        return timed([sys.executable, "-m", "nb2prod", "run", *args, "--json", "--quiet"], env)

    m: dict[str, float] = {}
    example = work / "pipeline.ipynb"
    shutil.copy(EXAMPLE, example)
    run(str(example), "--no-cache")  # warm workers (the cold first run is measured by cold_runs)
    one = write_nb(work / "one.ipynb", [("x = 1", ["stage:s0"])])
    run(str(one), "--no-cache")  # a warm worker for trivial stages
    chain = write_nb(work / f"chain{CHAIN}.ipynb", [("x0 = 0", ["stage:s0"])] +
                     [(f"x{i} = x{i - 1} + 1", [f"stage:s{i}"]) for i in range(1, CHAIN)])
    run(str(chain), "--no-cache")
    pairs = [(run(str(chain), "--no-cache")[0], run(str(one), "--no-cache")[0]) for _ in range(repeat)]
    m["one"] = statistics.median(t for _, t in pairs)
    m["per_stage_ms"] = statistics.median(c - t for c, t in pairs) / (CHAIN - 1) * 1000
    m["example"] = median(lambda: run(str(example), "--no-cache")[0], repeat)
    run(str(example))
    m["rerun"] = median(lambda: run(str(example))[0], repeat)
    edits = []
    for i in range(repeat):
        nb = json.loads(example.read_text())
        nb["cells"][-1]["source"] += f"\n_edit = {i}"
        example.write_text(json.dumps(nb))
        wall, result = run(str(example))
        edits.append((wall, result["stages"]["report"]["duration_s"]))
    m["edit_wall"], m["edit_stage"] = statistics.median(e[0] for e in edits), statistics.median(e[1] for e in edits)
    make = "import numpy as np\narr = np.ones(50_000_000)"
    handoff = write_nb(work / "handoff.ipynb", [(make, ["stage:make"]), ("total = float(arr.sum())", ["stage:use"])])
    single = write_nb(work / "single.ipynb", [(make + "\ntotal = float(arr.sum())", ["stage:both"])])
    two = median(lambda: run(str(handoff), "--no-cache")[0], repeat)
    both = median(lambda: run(str(single), "--no-cache")[0], repeat)
    m["handoff"] = two - both - m["per_stage_ms"] / 1000
    return m


QUIET_CPU = 0.1  # CPU seconds per second (all of a cluster's processes) below which a cluster is settled
SETTLE_MAX_S = 120.0


def settle(proc: subprocess.Popen) -> float:
    """Wait until the cluster `ray start` started in ``proc``'s session is idle: its processes together use under
    ``QUIET_CPU`` for two seconds in a row. Right after `ray start` returns, its daemons (dashboard, agents, Ray
    Client server, log monitor) still import for ~15-30 s of CPU on 2 cores; a user's cluster is up before their
    first run, so that is not nb2prod's time. Returns the seconds waited."""
    import psutil

    def cpu() -> float:
        total = 0.0
        for p in psutil.process_iter(["cpu_times"]):
            try:
                if os.getsid(p.pid) == proc.pid:
                    total += p.info["cpu_times"].user + p.info["cpu_times"].system
            except (OSError, psutil.Error, AttributeError):
                continue
        return total

    start, quiet, last = time.time(), 0, cpu()
    while quiet < 2 and time.time() - start < SETTLE_MAX_S:
        time.sleep(1)
        now = cpu()
        quiet = quiet + 1 if now - last < QUIET_CPU else 0
        last = now
    return time.time() - start


def cold_runs(repeat: int, work: Path) -> tuple[list[float], list[float], list[float], list[float]]:
    """``repeat`` first runs of the example each: on the embedded cluster from a fresh NB2PROD_HOME (the run starts
    the cluster); on a cluster `ray start` started and let :func:`settle`; and on such a cluster readied with
    `nb2prod cluster up --ray-address` (not timed), settled again. The machine is let settle before each. Also
    returns how long each fresh `ray start` cluster took to settle."""
    example = work / "cold.ipynb"
    shutil.copy(EXAMPLE, example)
    run = [sys.executable, "-m", "nb2prod", "run", str(example), "--no-cache", "--json", "--quiet"]
    embedded, ray_start, readied, waits = [], [], [], []
    for i in range(repeat):
        env = _home(f"cold-embedded-{i}")
        time.sleep(3)
        try:
            embedded.append(timed(run, env)[0])
        finally:
            subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "down"], env=env, capture_output=True)
        for samples, up in ((ray_start, False), (readied, True)):
            proc, env = start_ray(_home(f"cold-ray-start-{i}"))
            try:
                waits.append(settle(proc))
                if up:
                    timed([sys.executable, "-m", "nb2prod", "cluster", "up", "--ray-address", env["RAY_ADDRESS"]], env)
                    settle(proc)
                samples.append(timed(run, env)[0])
            finally:
                stop_ray(proc)
    return embedded, ray_start, readied, waits


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) CPU ticks of this machine so far (``/proc/stat``; (0, 0) where there is none). On a virtual
    machine, steal is time the host gave to others: it slows every figure of a phase by that share."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def stolen(before: tuple[int, int], after: tuple[int, int]) -> str:
    """The share of CPU time the host stole between two :func:`cpu_ticks`, as text."""
    return f"{100 * (after[0] - before[0]) / max(after[1] - before[1], 1):.0f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results_runner.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="nb2prod-bench-"))
    marks = [("start", cpu_ticks())]  # (phase that just ended, cpu_ticks())
    cold = cold_runs(min(args.repeat, 3), work)
    marks.append(("cold runs", cpu_ticks()))

    embedded_env = _home("embedded")
    subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "down"], env=embedded_env, capture_output=True)
    (work / "embedded").mkdir()
    try:
        emb = measure(embedded_env, work / "embedded", args.repeat)
        lookup = _lookup_ms(Path(embedded_env["NB2PROD_HOME"]), work / "embedded" / "pipeline.ipynb")
    finally:
        subprocess.run([sys.executable, "-m", "nb2prod", "cluster", "down"], env=embedded_env, capture_output=True)
    marks.append(("embedded", cpu_ticks()))

    proc, rs_env = start_ray(_home("ray-start"))
    (work / "ray-start").mkdir()
    try:
        rs = measure(rs_env, work / "ray-start", args.repeat)
    finally:
        stop_ray(proc)
    marks.append(("`ray start`", cpu_ticks()))

    shutil.copy(EXAMPLE, work / "pipeline.ipynb")
    paper = median(lambda: timed([sys.executable, "-m", "papermill", str(work / "pipeline.ipynb"),
                                  str(work / "pm-out.ipynb"), "--no-progress-bar"], embedded_env)[0], args.repeat)
    marks.append(("papermill", cpu_ticks()))
    steal = {phase: stolen(before, after) for (_, before), (phase, after) in zip(marks, marks[1:])}
    load_after = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)

    def row(name: str, e: float, r: float, unit: str, target: float | None, fmt: str = "{:.2f}",
            compare: bool = True) -> str:
        ok = lambda v: "" if target is None else (" ✅" if v <= target else " ❌")  # noqa: E731
        tgt = "report" if target is None else f"≤ {fmt.format(target)}{unit}"
        ratio = f"{r / e:.2f}×{' ✅' if r / e <= 1.5 else ' ❌'}" if compare and e > 0 and r > 0 else "—"
        return f"| {name} | {fmt.format(e)}{unit}{ok(e)} | {fmt.format(r)}{unit}{ok(r)} | {tgt} | {ratio} |"

    lines = ["# Runner and cache benchmarks", "",
             f"`python benchmarks/bench_runner.py --repeat {args.repeat}` on {os.cpu_count()} cores, "
             f"{time.strftime('%Y-%m-%d %H:%M')}; medians of fresh `nb2prod run` processes. Load average "
             f"(1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after (other work on the machine slows "
             "every figure). CPU time the host stole from this virtual machine (`/proc/stat`), by phase: "
             f"{', '.join(f'{phase} {share}' for phase, share in steal.items())}.", "",
             "Columns: nb2prod's embedded cluster; a cluster started with `ray start --head --num-cpus=2` "
             "(Ray's default system config), passed as `RAY_ADDRESS`; their ratio (target ≤ 1.5×).", "",
             "| measure | embedded | `ray start` | target | ray start / embedded |", "|---|---|---|---|---|",
             row(f"cold first run of the example, median of {len(cold[0])} (embedded: fresh NB2PROD_HOME, the run "
                 f"starts the cluster, runs {_secs(cold[0])}; ray start: first run on a cluster started and "
                 f"let settle ({min(cold[3]):.0f}–{max(cold[3]):.0f} s), runs {_secs(cold[1])})",
                 statistics.median(cold[0]), statistics.median(cold[1]), " s", 12.0),
             row(f"cold first run on a `ray start` cluster readied with `nb2prod cluster up --ray-address` (runs "
                 f"{_secs(cold[2])})", statistics.median(cold[0]), statistics.median(cold[2]), " s", 12.0),
             row("fresh `nb2prod run`, 1 trivial stage, warm", emb["one"], rs["one"], " s", 1.5),
             row(f"per-stage overhead (median of paired runs: {CHAIN} chained − 1 stage, / {CHAIN - 1})",
                 emb["per_stage_ms"], rs["per_stage_ms"], " ms", 20.0, "{:.1f}"),
             row("example pipeline, no cache", emb["example"], rs["example"], " s", None),
             row("example / papermill CLI ({:.2f} s)".format(paper), emb["example"] / paper, rs["example"] / paper,
                 "×", 0.5),
             row("400 MB numpy hand-off, added over one stage doing both", emb["handoff"], rs["handoff"], " s", 0.5),
             row("no-change rerun / full run", emb["rerun"] / emb["example"], rs["rerun"] / rs["example"], "×", 0.1,
                 compare=False),
             row("rerun after editing the last stage, over a no-change rerun, minus the stage",
                 emb["edit_wall"] - emb["rerun"] - emb["edit_stage"], rs["edit_wall"] - rs["rerun"] - rs["edit_stage"],
                 " s", 0.5, compare=False),
             "", f"Cache lookup per stage (client side, no cluster): {lookup:.2f} ms (target ≤ 5 ms)"
             f"{' ✅' if lookup <= 5 else ' ❌'}.", ""]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _secs(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values) + " s"


def _lookup_ms(home: Path, notebook: Path) -> float:
    os.environ["NB2PROD_HOME"] = str(home)
    from nb2prod.cache.plan import plan
    from nb2prod.core.builder import build_spec
    from nb2prod.core.params import resolved_parameters
    from nb2prod.contracts import RunOptions

    spec = build_spec(notebook)
    params = resolved_parameters(spec, {})
    t = time.perf_counter()
    for _ in range(20):
        plan(spec, params, RunOptions())
    return (time.perf_counter() - t) / 20 / len(spec.stages) * 1000


if __name__ == "__main__":
    main()
