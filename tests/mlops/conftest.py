"""The core tests' notebook builder, shared with the mlops tests."""

from tests.core.conftest import build  # noqa: F401
