"""Packaging checks: the extension entry points, the auto-enable config, the Binder files and badge."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import pytest
import yaml

from tests.conftest import ROOT

BINDER_URLPATH = re.compile(r"mybinder\.org/v2/gh/[^)\s\"']*?[?&]urlpath=([^)&\s\"']+)")


def test_server_extension_points_and_auto_enable():
    import nb2prod
    from nb2prod import server

    for module in (nb2prod, server):
        assert module._jupyter_server_extension_points() == [{"module": "nb2prod.server"}]
        assert module._jupyter_labextension_paths() == [{"src": "labextension", "dest": "nb2prod"}]
    config = json.loads((ROOT / "jupyter-config/server-config/nb2prod.json").read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"nb2prod": True}}}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shared = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["jupyter-config/server-config"] == "etc/jupyter/jupyter_server_config.d"
    assert shared["nb2prod/labextension"] == "share/jupyter/labextensions/nb2prod"
    package = json.loads((ROOT / "labextension/package.json").read_text())
    assert package["name"] == "nb2prod"
    assert package["jupyterlab"]["outputDir"] == "../nb2prod/labextension"


def test_binder_installs_the_package_from_this_checkout():
    env = yaml.safe_load((ROOT / "binder/environment.yml").read_text())
    deps = env["dependencies"]
    assert any(str(d).startswith("nodejs") for d in deps), "building the labextension from source needs node"
    python = next(str(d) for d in deps if str(d).startswith("python="))
    major, minor = map(int, python.split("=")[1].split(".")[:2])
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert (major, minor) >= tuple(map(int, requires.lstrip(">=").split(".")[:2]))

    post_build = ROOT / "binder/postBuild"
    assert post_build.stat().st_mode & 0o111, "postBuild must be executable"
    subprocess.run(["bash", "-n", str(post_build)], check=True)
    lines = [line.strip() for line in post_build.read_text().splitlines() if not line.lstrip().startswith("#")]
    cd = next(line for line in lines if line.startswith("cd "))
    assert '"$(dirname "$0")/.."' in cd  # the repository root
    install = next(line for line in lines if "pip install" in line)
    assert re.search(r"""pip install (--\S+ )*["']?\.(\[[\w,]+\])?["']?$""", install), install
    assert "example" in install  # the example notebook's libraries


def test_binder_badge_points_at_the_example():
    readme = (ROOT / "README.md").read_text()
    urlpaths = BINDER_URLPATH.findall(readme)
    if not urlpaths:
        pytest.skip("README has no Binder badge yet")
    for urlpath in urlpaths:
        path = urlpath.replace("%2F", "/")
        assert path.startswith("lab/tree/"), path
        assert (ROOT / path.removeprefix("lab/tree/")).is_file(), path
    assert (ROOT / "example_notebooks/pipeline.ipynb").is_file()
