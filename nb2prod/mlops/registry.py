"""Models to the MLflow registry (``register:VAR[=NAME]``) and aliases (``--promote ALIAS``).

:func:`pack_model` runs in the stage's Ray worker: it saves the value with the matching MLflow flavor to a
temporary directory there and returns the directory as tar bytes, which travel back through Ray. The
coordinator (the run's single MLflow writer) logs them to the stage's run and registers a version with
:func:`log_and_register`: the worker never writes into the client's tracking store (no shared filesystem).
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from importlib import metadata
from typing import Any

EXAMPLE_ROWS = 5
# module root of the value's type -> (mlflow flavor module, distribution to pin)
FLAVORS = {"xgboost": ("mlflow.xgboost", "xgboost"), "lightgbm": ("mlflow.lightgbm", "lightgbm"),
           "statsmodels": ("mlflow.statsmodels", "statsmodels"), "torch": ("mlflow.pytorch", "torch"),
           "keras": ("mlflow.keras", "keras"), "sklearn": ("mlflow.sklearn", "scikit-learn")}
PYFUNC = "pyfunc"
# the flavor's own options: scikit-learn models as cloudpickle (MLflow's skops default refuses tree models)
FLAVOR_OPTIONS = {"mlflow.sklearn": {"serialization_format": "cloudpickle"}}


def flavor_of(value: Any) -> str:
    """The MLflow flavor module for ``value`` (its own type's package first, then its bases), else ``pyfunc``."""
    roots = [c.__module__.split(".")[0] for c in type(value).__mro__]
    for root in roots:
        if root in FLAVORS:
            return FLAVORS[root][0]
    return PYFUNC


def pack_model(value: Any, candidates: list[Any]) -> dict[str, Any]:
    """Save ``value`` as an MLflow model in a worker temp dir; return ``{flavor, archive}`` (tar.gz bytes).

    ``candidates``: values the stage had (its inputs first) to infer a signature and input example from:
    the first DataFrame or 2-D array the model can predict on.
    """
    flavor = flavor_of(value)
    example, signature = _example(value, candidates) if flavor != "mlflow.pytorch" else (None, None)
    with tempfile.TemporaryDirectory(prefix="nb2prod-model-") as tmp:
        path = os.path.join(tmp, "model")
        if flavor == PYFUNC:
            import mlflow.pyfunc

            mlflow.pyfunc.save_model(path, python_model=_pickled_model(value), signature=signature,
                                     input_example=example, pip_requirements=_pins("mlflow", "cloudpickle"))
        else:
            import importlib

            module = importlib.import_module(flavor)
            dist = next(d for m, d in FLAVORS.values() if m == flavor)
            module.save_model(value, path, signature=signature, input_example=example,
                              pip_requirements=_pins(dist, "cloudpickle"), **FLAVOR_OPTIONS.get(flavor, {}))
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(path, arcname=".")
    return {"flavor": flavor, "archive": buffer.getvalue()}


def _example(value: Any, candidates: list[Any]) -> tuple[Any, Any]:
    predict = getattr(value, "predict", None)
    if not callable(predict):
        return None, None
    for candidate in candidates:
        is_frame = type(candidate).__name__ == "DataFrame" and type(candidate).__module__.startswith("pandas")
        if not (is_frame or (getattr(candidate, "ndim", None) == 2 and type(candidate).__module__ == "numpy")):
            continue
        example = candidate.iloc[:EXAMPLE_ROWS] if is_frame else candidate[:EXAMPLE_ROWS]
        try:
            prediction = predict(example)
        except Exception:  # noqa: BLE001 - not this model's input; try the next candidate
            continue
        from mlflow.models import infer_signature

        return example, infer_signature(example, prediction)
    return None, None


def _pickled_model(value: Any):
    """A pyfunc wrapper of any object with ``predict`` (or a callable). The class is made here so that
    cloudpickle stores it by value: loading the model does not need nb2prod."""
    import mlflow.pyfunc

    class PickledModel(mlflow.pyfunc.PythonModel):
        def __init__(self, obj: Any) -> None:
            self.obj = obj

        def predict(self, context, model_input, params=None):  # noqa: ARG002 - MLflow's signature
            fn = getattr(self.obj, "predict", None)
            return fn(model_input) if callable(fn) else self.obj(model_input)

    return PickledModel(value)


def _pins(*dists: str) -> list[str]:
    pins = []
    for dist in dists:
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


def log_and_register(client, run_id: str, variable: str, name: str, packed: dict[str, Any],
                     tags: dict[str, str]) -> dict[str, Any]:
    """Log a packed model under ``models/VAR`` of the stage run and register it as a new version of ``name``."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="nb2prod-model-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(packed["archive"]), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        client.log_artifacts(run_id, tmp, f"models/{variable}")
    source = f"{client.get_run(run_id).info.artifact_uri}/models/{variable}"
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source, run_id=run_id, tags=tags)
    return {"model": name, "version": int(version.version), "variable": variable, "run_id": run_id,
            "flavor": packed["flavor"]}


def alias_holder(client, name: str, alias: str) -> Any | None:
    """The model version holding ``alias`` of model ``name``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
