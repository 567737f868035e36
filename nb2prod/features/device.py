"""Device selection: CuPy on a usable GPU, NumPy everywhere else.

Detection is defensive: importing CuPy is not proof of a GPU, so we also ask
``cupy.cuda.is_available()`` and try a tiny allocation. Nothing here imports
Ray; Ray's GPU assignment is consulted only when Ray is already loaded.
"""
from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any, Literal

import numpy as np

Device = Literal["auto", "cpu", "gpu"]
_ENV = "NB2PROD_DEVICE"


def _ray_gpu_ids() -> list[Any]:
    """GPU ids Ray assigned to the current task ([] outside Ray)."""
    ray = sys.modules.get("ray")
    if ray is None:
        return []
    try:
        if not ray.is_initialized():
            return []
        return list(ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - outside a task / driver without GPUs
        return []


def _usable_cupy() -> tuple[ModuleType | None, str]:
    """Return (cupy, "") when a GPU is really usable, else (None, reason)."""
    try:
        import cupy  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA install
        return None, f"CuPy is not importable ({type(exc).__name__}: {exc})"
    try:
        if not cupy.cuda.is_available():
            return None, "CuPy is installed but no CUDA device is available"
        cupy.zeros(1, dtype=cupy.float32).sum().item()  # tiny allocation + launch
    except Exception as exc:  # noqa: BLE001 - driver/runtime errors
        return None, f"CuPy cannot use the GPU ({type(exc).__name__}: {exc})"
    return cupy, ""


def gpu_available() -> bool:
    """True when CuPy can allocate on a GPU in this process."""
    return _usable_cupy()[0] is not None


def select_device(device: Device | str = "auto") -> ModuleType:
    """Return the array module to compute with: ``cupy`` or ``numpy``.

    ``auto``: ``NB2PROD_DEVICE=cpu`` (set by ``--gpu-fallback cpu``) forces NumPy;
    otherwise the GPU Ray assigned to this task, else CuPy's current device
    when usable, else NumPy. ``gpu``: CuPy or a RuntimeError saying why not.
    """
    device = (device or "auto").lower()
    if device not in ("auto", "cpu", "gpu"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'gpu', not {device!r}")
    env = os.environ.get(_ENV, "").strip().lower()
    if device == "cpu" or (device == "auto" and env == "cpu"):
        return np
    ray_ids = _ray_gpu_ids()
    cupy, why = _usable_cupy()
    if cupy is not None:
        if ray_ids:
            # Ray sets CUDA_VISIBLE_DEVICES to the assigned GPUs, so device 0
            # is the first one Ray gave this task.
            cupy.cuda.Device(0).use()
        return cupy
    if device == "gpu":
        raise RuntimeError(f"device='gpu' was requested but no GPU is usable: {why}. "
                           "Use device='auto' or 'cpu' to run with NumPy.")
    return np


def is_cupy(x: Any) -> bool:
    """True for a CuPy array (without importing CuPy)."""
    return type(x).__module__.split(".")[0] == "cupy"


def to_numpy(x: Any) -> np.ndarray:
    """Host copy of an array (NumPy arrays are returned as-is)."""
    if is_cupy(x):
        return x.get()
    return np.asarray(x)

