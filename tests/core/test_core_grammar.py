"""The tag grammar of both dialects and the ``%%stage`` header, table-driven."""

from __future__ import annotations

import pytest

from nb2prod.core.grammar import parse_resources, parse_size, parse_stage_magic, parse_tags

GiB = 2**30


@pytest.mark.parametrize("tag, expected", [
    # nb2prod dialect
    ("parameters", {"role": "parameters"}),
    ("stage:train_model-2", {"stage": "train_model-2", "stage_dialect": "nb2prod"}),
    ("stage:Load", {"stage": "Load", "stage_dialect": "nb2prod"}),
    ("after:load", {"after": ["load"]}),
    ("setup", {"role": "setup"}),
    ("skip", {"role": "skip"}),
    ("metrics", {"metrics": True}),
    ("resources:cpu=2,gpu=1,memory=4GiB", {"resources": {"cpu": 2.0, "gpu": 1.0, "memory": 4 * GiB}}),
    ("resources:memory=512M", {"resources": {"memory": 512_000_000}}),
    ("resources:node_a=1", {"resources": {"node_a": 1.0}}),
    ("gpu", {"resources": {"gpu": 1.0}}),
    ("retries:3", {"retries": 3}),
    ("timeout:90", {"timeout": 90.0}),
    ("timeout:2.5", {"timeout": 2.5}),
    ("nocache", {"nocache": True}),
    ("inputs:data/*.csv", {"inputs": ["data/*.csv"]}),
    # Kale dialect
    ("step:load_data", {"stage": "load_data", "stage_dialect": "kale"}),
    ("block:load_data", {"stage": "load_data", "stage_dialect": "kale"}),
    ("block:", {"stage": None, "continues": True, "stage_dialect": "kale"}),
    ("step:", {"stage": None, "continues": True, "stage_dialect": "kale"}),
    ("prev:load_data", {"prev": ["load_data"]}),
    ("imports", {"role": "setup", "kale_setup_order": 0}),
    ("functions", {"role": "setup", "kale_setup_order": 1}),
    ("pipeline-parameters", {"role": "parameters"}),
    ("pipeline-metrics", {"kale_metrics": True}),
    ("limit:nvidia.com/gpu:2", {"resources": {"gpu": 2.0}}),
    # Kale's Kubernetes-only tags and unrelated tags are accepted and ignored
    ("limit:memory:4Gi", {}),
    ("annotation:team:ml", {}),
    ("label:tier:gold", {}),
    ("image:python:3.11", {}),
    ("cache:disabled", {}),
    ("hide-input", {}),
])
def test_each_tag(tag, expected):
    d = parse_tags([tag])
    assert d.problems == []
    for field, value in expected.items():
        assert getattr(d, field) == value, field
    if not expected:
        assert (d.role, d.stage, d.after, d.resources) == ("code", None, [], {})


def test_tags_combine_and_gpu_does_not_override_explicit_count():
    d = parse_tags(["stage:fit", "after:a", "after:b", "resources:gpu=2", "gpu", "retries:1"])
    assert (d.stage, d.after, d.resources, d.retries) == ("fit", ["a", "b"], {"gpu": 2.0}, 1)


@pytest.mark.parametrize("tag, fragment", [
    ("stage:bad name", "stage names use letters"),
    ("stage:", "stage names use letters"),
    ("after:a/b", "after:NAME names a stage"),
    ("retries:many", "whole number"),
    ("retries:-1", "whole number"),
    ("timeout:soon", "number of seconds"),
    ("prev:Load", "names a Kale step"),
    ("step:Load", "lowercase"),
    ("block:load-data", "lowercase"),
    ("resources:cpu", "is not NAME=VALUE"),
    ("resources:cpu=lots", "is not a number"),
    ("resources:memory=lots", "invalid size"),
])
def test_malformed_tags_are_problems(tag, fragment):
    problems = parse_tags([tag]).problems
    assert len(problems) == 1 and fragment in problems[0] and repr(tag) in problems[0]


def test_two_stage_names_in_one_cell_is_a_problem():
    assert "one stage" in parse_tags(["stage:a", "stage:b"]).problems[0]
    assert "one stage" in parse_tags(["step:a", "step:b"]).problems[0]


@pytest.mark.parametrize("text, size", [
    ("1000", 1000), ("512M", 512_000_000), ("512MB", 512_000_000), ("4GiB", 4 * GiB), ("1.5Gi", int(1.5 * GiB)),
    ("2k", 2000), ("1T", 10**12), ("1Ti", 2**40),
])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_resources_memory_in_bytes():
    assert parse_resources("cpu=0.5, memory=1G") == {"cpu": 0.5, "memory": 10**9}


@pytest.mark.parametrize("header, expected", [
    ("load", {"stage": "load", "after": [], "resources": {}}),
    ("fit --after load --after clean", {"after": ["load", "clean"]}),
    ("fit --gpu", {"resources": {"gpu": 1.0}}),
    ("fit --gpu 2 --cpu 4 --memory 2GiB", {"resources": {"gpu": 2.0, "cpu": 4.0, "memory": 2 * GiB}}),
    ("fit --retries 3 --timeout 60 --nocache", {"retries": 3, "timeout": 60.0, "nocache": True}),
])
def test_stage_magic_header(header, expected):
    d = parse_stage_magic(header)
    assert d.stage_dialect == "nb2prod"
    for field, value in expected.items():
        assert getattr(d, field) == value


@pytest.mark.parametrize("header", ["", "load --bogus", "load extra", "bad/name", "load --retries x", "a --gpu -1",
                                    "a --cpu -2", "a --retries -1", "a --timeout nan", "a --cpu inf"])
def test_bad_stage_magic_header(header):
    with pytest.raises(ValueError):
        parse_stage_magic(header)


@pytest.mark.parametrize("spec", ["gpu=-1", "cpu=nan", "custom=inf", "cpu=two"])
def test_resources_are_numbers_of_at_least_0(spec):
    with pytest.raises(ValueError, match="is not a number of at least 0"):
        parse_resources(spec)
