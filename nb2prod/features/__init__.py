"""CuPy/NumPy feature transforms with the scikit-learn API.

Importing this package is cheap: submodules load on first attribute access.
NumPy is the only hard dependency; CuPy is used when a usable GPU exists.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "select_device": "device", "gpu_available": "device",
    "StandardScaler": "scalers", "MinMaxScaler": "scalers", "RobustScaler": "scalers",
    "SimpleImputer": "impute", "Log1pTransformer": "impute", "ClipTransformer": "impute",
    "OneHotEncoder": "encoders", "OrdinalEncoder": "encoders",
    "KBinsDiscretizer": "discretize", "FeaturePipeline": "fused",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'nb2prod.features' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)


def __dir__() -> list[str]:
    return __all__
