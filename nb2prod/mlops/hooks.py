"""The coordinator's side of registration, drift and gates: small hooks the orchestration calls.

Wrapped as a lifecycle hook by :class:`nb2prod.runner.hooks.Mlops`. ``start`` loads the reference
profiles; ``stage_done`` (DAG loop) compares a monitoring stage's profiles
and names the stages to skip under ``--fail-on-drift``; ``stage_logged`` (MLflow writer thread) logs
profiles and registers models on the stage's run; ``finish`` evaluates the gates on the parent run's
metrics, promotes, and tags the parent run.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from nb2prod.errors import UsageError
from nb2prod.mlops import drift as drift_mod
from nb2prod.mlops import registry
from nb2prod.mlops.gates import evaluate, parse_gates

PROFILE_TAG = "nb2prod.profile."  # + VAR on the parent run: the stage run holding profiles/VAR.json
DEFAULT_ALIAS = "champion"


class MlopsHooks:
    """One run's registration, drift and gate state inside the coordinator."""

    def __init__(self, request, tracker) -> None:
        self.req, self.tracker, self.spec = request, tracker, request.spec
        self.gates = parse_gates([*self.spec.gates, *request.gates])
        self.registered: list[dict[str, Any]] = []
        self.drift: dict[str, dict[str, Any]] = {}  # VAR -> drift.compare result
        self.references: dict[str, dict[str, Any]] = {}  # VAR -> reference profile
        self.reference_run: str | None = None
        self.failure: dict[str, Any] | None = None  # DriftDetected under --fail-on-drift
        self.problems: list[str] = []  # registrations that failed (shown in the promotion's reason)
        self.monitored = {v: s.name for s in self.spec.stages.values() for v in s.monitor}

    @property
    def client(self):
        """The tracker's MLflow client (mlflow imported on first use, on the MLflow writer)."""
        return self.tracker.client

    # --- start ---------------------------------------------------------------------
    def start(self, experiment_id: str, parent: str) -> None:
        """Find the reference run and load its profiles of the monitored variables."""
        if not self.monitored:
            return
        self.reference_run = self._reference(experiment_id, parent)
        if not self.reference_run:
            return
        from mlflow.exceptions import MlflowException

        try:
            tags = self.client.get_run(self.reference_run).data.tags
        except MlflowException as exc:
            if getattr(exc, "error_code", None) != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise UsageError(f"--drift-reference {self.reference_run}: no such run in the tracking store; give "
                             "champion, previous, an nb2prod run id or an MLflow parent run id") from None
        for var in self.monitored:
            holder = tags.get(PROFILE_TAG + var)
            if holder:
                self.references[var] = self._download_json(holder, f"profiles/{var}.json")

    def _reference(self, experiment_id: str, parent: str) -> str | None:
        choice = self.req.drift_reference or "champion"
        if choice not in ("champion", "previous"):
            return choice  # an MLflow parent run id (the API resolved nb2prod run ids)
        if choice == "champion":
            alias = self.req.promote or DEFAULT_ALIAS
            for name in sorted({n for s in self.spec.stages.values() for n in s.register.values()}):
                holder = registry.alias_holder(self.client, name, alias)
                if holder and holder.run_id:
                    stage_run = self.client.get_run(holder.run_id)
                    return stage_run.data.tags.get("mlflow.parentRunId", holder.run_id)
        notebook = self.req.tags.get("nb2prod.notebook", "").replace("'", "\\'")
        runs = self.client.search_runs(
            [experiment_id], f"tags.`nb2prod.kind` = 'pipeline' AND tags.`nb2prod.notebook` = '{notebook}' "
                             "AND attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
            max_results=50)
        return next((r.info.run_id for r in runs if r.info.run_id != parent
                     and any(k.startswith(PROFILE_TAG) for k in r.data.tags)), None)

    def _download_json(self, run_id: str, path: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            local = self.client.download_artifacts(run_id, path, tmp)
            with open(local) as f:
                return json.load(f)

    # --- DAG loop ------------------------------------------------------------------
    def stage_done(self, name: str, meta: dict[str, Any]) -> list[str]:
        """Compare the stage's profiles; under --fail-on-drift return the stages that must not run."""
        skip: list[str] = []
        for var, profile in (meta.get("profiles") or {}).items():
            if var not in self.references:
                continue
            result = drift_mod.compare(var, self.references[var], profile, self.req.drift_threshold)
            self.drift[var] = result
            if result["drifted"] and self.req.fail_on_drift:
                consumers = [s.name for s in self.spec.stages.values() if var in s.inputs]
                skip += [s for s in self.spec.downstream(consumers) if s not in skip]
                self.failure = {"type": "DriftDetected", "stage": name, "cell_index": None, "line": None,
                                "traceback": "", "message": f"{var} drifted: {_drift_reason(result)}; stages "
                                f"{', '.join(skip) or 'none'} were skipped (--fail-on-drift)"}
        return skip

    def stage_metrics(self, name: str) -> dict[str, float]:
        """Drift metrics of the variables stage ``name`` monitors (logged on its run and the parent)."""
        return {k: v for var, r in self.drift.items() if self.monitored.get(var) == name
                for k, v in r["metrics"].items()}

    # --- MLflow writer thread ------------------------------------------------------
    def stage_logged(self, name: str, meta: dict[str, Any], child: str, parent: str) -> None:
        """Log the stage's profiles and register its models on its MLflow run ``child``."""
        for var, profile in (meta.pop("profiles", None) or {}).items():
            self.client.log_text(child, json.dumps(profile), f"profiles/{var}.json")
            self.client.set_tag(parent, PROFILE_TAG + var, child)
        for var, packed in (meta.pop("models", None) or {}).items():
            model = self.spec.stages[name].register[var]
            tags = {"nb2prod.run_id": self.req.run_id, "nb2prod.stage": name, "nb2prod.variable": var}
            try:
                self.registered.append(registry.log_and_register(self.client, child, var, model, packed, tags))
            except Exception as exc:  # noqa: BLE001 - reported with the promotion, never lost silently
                self.problems.append(f"registering {var} as {model} failed: {type(exc).__name__}: {exc}")

    # --- end of the run ------------------------------------------------------------
    def finish(self, parent: str, metrics: dict[str, float], succeeded: bool) -> dict[str, Any]:
        """Gates on the parent run's ``metrics``, promotion, tags; returns ``{gate, promotion, drift}``."""
        gate = evaluate(self.gates, metrics) if succeeded else {"status": "none", "reason": "the run failed",
                                                                "results": []}
        drift = self._drift_summary()
        promotion = self._promote(gate, drift, metrics) if self.req.promote and succeeded else None
        tags = {"nb2prod.gate.status": gate["status"], "nb2prod.gate.reason": gate["reason"]}
        if drift:
            tags.update({"nb2prod.drifted": str(drift["drifted"]).lower(),
                         "nb2prod.drift.columns": json.dumps(drift["columns"]),
                         "nb2prod.drift.reference": drift["reference"] or ""})
        if promotion:
            tags.update({f"nb2prod.promotion.{k}": str(v) for k, v in promotion.items() if k != "others"})
        from mlflow.entities import RunTag

        self.client.log_batch(parent, tags=[RunTag(k, v[:5000]) for k, v in tags.items()])
        return {"gate": gate, "promotion": promotion, "drift": drift}

    def _drift_summary(self) -> dict[str, Any] | None:
        if not self.drift:
            return None
        return {"drifted": any(r["drifted"] for r in self.drift.values()), "reference": self.reference_run,
                "threshold": self.req.drift_threshold,
                "columns": {v: r["drifted_columns"] for v, r in self.drift.items()},
                "max_psi": {v: round(r["max_psi"], 4) for v, r in self.drift.items()},
                "reason": "; ".join(f"{v}: {_drift_reason(r)}" for v, r in self.drift.items())}

    def _promote(self, gate: dict[str, Any], drift: dict[str, Any] | None,
                 metrics: dict[str, float]) -> dict[str, Any]:
        alias = self.req.promote
        if not self.registered:
            why = "; ".join(self.problems) or "the registering stage was cached or skipped"
            reason = "; ".join(filter(None, [_refusal(gate, drift), f"no new model version ({why})"]))
            return {"alias": alias, "model": None, "version": None, "moved": False, "reason": reason}
        outcomes = [self._promote_one(alias, entry, gate, drift, metrics) for entry in self.registered]
        return {**outcomes[0], "others": outcomes[1:]} if len(outcomes) > 1 else outcomes[0]

    def _promote_one(self, alias: str, entry: dict[str, Any], gate: dict[str, Any],
                     drift: dict[str, Any] | None, metrics: dict[str, float]) -> dict[str, Any]:
        name, version = entry["model"], entry["version"]
        reason = _refusal(gate, drift)
        holder = registry.alias_holder(self.client, name, alias)
        compared = ""
        if reason is None and holder is not None and self.gates:
            first = self.gates[0]
            old = self._holder_metric(holder, first.metric)
            new = metrics.get(first.metric)
            if old is not None and new is not None:
                compared = f"; {alias} v{holder.version} had {old:.4g}"
                if not first.better_or_equal(new, old):
                    reason = f"{first.metric} {new:.4g} is worse than {alias} v{holder.version}'s {old:.4g}"
        if reason is None:
            self.client.set_registered_model_alias(name, alias, str(version))
            reason = (gate["reason"] if gate["status"] == "passed" else "no gates") + (
                compared or ("" if holder is None else f"; replaced {alias} v{holder.version}"))
            self.client.set_model_version_tag(name, str(version), "nb2prod.promoted", f"{alias}: {reason}")
            return {"alias": alias, "model": name, "version": version, "moved": True, "reason": reason}
        self.client.set_model_version_tag(name, str(version), "nb2prod.not_promoted", reason)
        return {"alias": alias, "model": name, "version": version, "moved": False, "reason": reason}

    def _holder_metric(self, holder, metric: str) -> float | None:
        stage_run = self.client.get_run(holder.run_id)
        parent = stage_run.data.tags.get("mlflow.parentRunId")
        if parent:
            value = self.client.get_run(parent).data.metrics.get(metric)
            if value is not None:
                return value
        return stage_run.data.metrics.get(metric)


def _refusal(gate: dict[str, Any], drift: dict[str, Any] | None) -> str | None:
    """Why this run's gate or drift forbids a promotion, or None."""
    if gate["status"] == "failed":
        return f"gate failed: {gate['reason']}"
    if drift and drift["drifted"]:
        return f"data drifted: {drift['reason']}"
    return None


def _drift_reason(result: dict[str, Any]) -> str:
    cols = result["drifted_columns"]
    shown = ", ".join(cols[:5]) + (f" (+{len(cols) - 5})" if len(cols) > 5 else "")
    verdict = f"columns {shown} over" if cols else "no column over"
    return f"max PSI {result['max_psi']:.3g}, {verdict} {result['threshold']:g}"


def enabled(spec, request) -> bool:
    """Whether a run needs the hooks at all (any register:/monitor:/gate: or a gate/promote option)."""
    return bool(spec.gates or request.gates or request.promote or
                any(s.register or s.monitor for s in spec.stages.values()))

