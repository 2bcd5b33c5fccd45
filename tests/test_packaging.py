"""The installable distribution: a wheel built from this tree holds every package under a
name that hides no other distribution's namespace, with its data files and licence."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


_NOT_SHIPPED = (".git", ".venv", "build", "*.egg-info", "__pycache__", "tests", "benchmarks", "data", "docs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built from a copy of the tree (setuptools writes build/ and egg-info beside the
    sources it builds, which must not appear in the tree other tests read)."""
    source, out = tmp_path_factory.mktemp("source") / "ctdenoise", tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SHIPPED))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, text=True)
    return zipfile.ZipFile(next(out.glob("ctdenoise-*.whl")))


def test_the_kubeflow_folder_installs_as_ctdenoise_kubeflow_not_over_the_sdks_namespace(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert "kubeflow" not in tops
    assert {"ctdenoise_kubeflow", "app", "components", "dicomweb_io", "trainer_module"} <= tops
    assert "ctdenoise_kubeflow/entrypoint.py" in wheel.namelist()


def test_every_package_of_the_tree_is_in_the_wheel_with_its_data(wheel):
    names = set(wheel.namelist())
    for init in ROOT.glob("*/**/__init__.py"):
        folder = init.parent.relative_to(ROOT).as_posix()
        if folder.split("/")[0] in ("tests", "benchmarks", ".venv", "build"):
            continue
        installed = folder.replace("kubeflow", "ctdenoise_kubeflow", 1) if folder.startswith("kubeflow") else folder
        assert f"{installed}/__init__.py" in names, folder
    assert "components/schema/schema.pbtxt" in names
    metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License: Apache-2.0" in metadata and "Provides-Extra: kubeflow" in metadata
