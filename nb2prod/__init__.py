"""nb2prod: tagged Jupyter notebooks become parameterized, tracked pipelines on Ray and MLflow."""

__version__ = "0.1.0"
