"""Helpers for the core tests: in-memory notebooks of (source, tags) cells, built into specs."""

from __future__ import annotations

import pytest

from nb2prod.core.builder import spec_from_notebook
from nb2prod.core.spec import PipelineSpec


def notebook(cells: list[tuple[str, list[str]]]) -> dict:
    """An nbformat-4 notebook dict of code cells with ids ``c0``, ``c1``, ..."""
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": f"c{i}", "metadata": {"tags": tags} if tags else {}, "source": source,
         "outputs": [], "execution_count": None} for i, (source, tags) in enumerate(cells)]}


@pytest.fixture
def build():
    """``build([(source, tags), ...]) -> PipelineSpec``."""
    def _build(cells: list[tuple[str, list[str]]]) -> PipelineSpec:
        return spec_from_notebook(notebook(cells), "nb.ipynb")
    return _build


def dag(spec: PipelineSpec) -> dict:
    """Stages (cells, inputs, upstream) and edges, for compact assertions."""
    return {n: (s.cells, sorted(s.inputs), s.upstream) for n, s in spec.stages.items()}
