"""select_device: safe without CuPy, env override, clear error for device='gpu'."""
from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from nb2prod.features import device as dev


def test_cpu_and_env(monkeypatch) -> None:
    assert dev.select_device("cpu") is np
    monkeypatch.setenv("NB2PROD_DEVICE", "cpu")
    assert dev.select_device("auto") is np


def test_bad_value() -> None:
    with pytest.raises(ValueError):
        dev.select_device("tpu")


def test_no_cupy(monkeypatch) -> None:
    monkeypatch.delenv("NB2PROD_DEVICE", raising=False)
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    assert dev.select_device("auto") is np
    assert not dev.gpu_available()
    with pytest.raises(RuntimeError, match="no GPU is usable"):
        dev.select_device("gpu")


def test_cupy_without_device(monkeypatch) -> None:
    """CuPy importing is no proof of a GPU: is_available False / failing allocation."""
    monkeypatch.delenv("NB2PROD_DEVICE", raising=False)
    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(is_available=lambda: False)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert dev.select_device("auto") is np
    fake.cuda = types.SimpleNamespace(is_available=lambda: True)
    fake.float32 = "float32"

    def boom(*a, **k):
        raise RuntimeError("cudaErrorNoDevice")
    fake.zeros = boom
    assert dev.select_device("auto") is np
    with pytest.raises(RuntimeError, match="cudaErrorNoDevice"):
        dev.select_device("gpu")


def test_ray_not_imported_by_detection() -> None:
    code = ("import sys; from nb2prod.features import select_device; select_device('auto');"
            "import nb2prod.features as F; F.StandardScaler;"
            "assert 'ray' not in sys.modules and 'sklearn' not in sys.modules, sys.modules.keys()")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_package_import_is_light() -> None:
    code = ("import sys, nb2prod.features;"
            "bad = [m for m in ('sklearn', 'cupy', 'pandas', 'ray', 'array_api_compat')"
            " if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
