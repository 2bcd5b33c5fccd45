"""The installable distribution: a wheel built from this tree holds one top-level package,
`ctdenoise`, with every subpackage, its data files (the schema, the demo's real CT) and the
licence; installed outside the checkout, `ctdenoise demo` runs from it."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.limits import HANG_S

ROOT = Path(__file__).resolve().parents[1]

_NOT_SHIPPED = (".git", ".venv", "build", "*.egg-info", "__pycache__", "tests", "benchmarks", "docs")
_FORMER_TOP_LEVEL = {
    "app",
    "contract",
    "dicomio",
    "dicomweb_io",
    "pipeline",
    "simulator",
    "storage",
    "components",
    "trainer_module",
    "ctdenoise_kubeflow",
}
"""Names the packages had before they moved under `ctdenoise`: an import of one would load a
second copy of a module through the checkout's root, or fail outside it."""


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory) -> Path:
    """A wheel built from a copy of the tree (setuptools writes build/ and egg-info beside the
    sources it builds, which must not appear in the tree other tests read)."""
    source, out = tmp_path_factory.mktemp("source") / "ctdenoise", tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SHIPPED), symlinks=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        text=True,
    )
    return next(out.glob("ctdenoise-*.whl"))


@pytest.fixture(scope="module")
def wheel(wheel_path) -> zipfile.ZipFile:
    return zipfile.ZipFile(wheel_path)


def test_the_wheel_has_one_top_level_package(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"ctdenoise"}
    assert "ctdenoise/kubeflow/entrypoint.py" in wheel.namelist()


def test_every_package_of_the_tree_is_in_the_wheel_with_its_data(wheel):
    names = set(wheel.namelist())
    for init in (ROOT / "ctdenoise").glob("**/__init__.py"):
        folder = init.parent.relative_to(ROOT).as_posix()
        assert f"{folder}/__init__.py" in names, folder
    for top in ("pipeline", "components", "trainer_module", "kubeflow"):
        assert f"ctdenoise/{top}/__init__.py" in names, top
    assert "ctdenoise/components/schema/schema.pbtxt" in names
    assert "ctdenoise/data/realct/README.md" in names
    shipped_ct = {n for n in names if n.startswith("ctdenoise/data/realct/")}
    in_tree = {
        p.relative_to(ROOT).as_posix() for p in (ROOT / "ctdenoise" / "data" / "realct").rglob("*") if p.is_file()
    }
    assert shipped_ct == in_tree
    metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License: Apache-2.0" in metadata and "Provides-Extra: kubeflow" in metadata


def test_nothing_imports_a_package_by_its_former_top_level_name():
    found = []
    for path in ROOT.glob("**/*.py"):
        if any(part in (".venv", "build", ".git") for part in path.relative_to(ROOT).parts) or path.is_symlink():
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            found += [f"{where} {n}" for n in names if n.split(".")[0] in _FORMER_TOP_LEVEL]
    assert found == []


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_outside_the_checkout(wheel_path, tmp_path):
    """A fresh virtualenv holding only the wheel (the locked dependencies come from this
    checkout's environment through a path file, not its editable install) runs `ctdenoise
    demo` from a folder outside the checkout, on the real CT the wheel carries."""
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "locked-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel_path)],
        check=True,
        capture_output=True,
        text=True,
    )
    where = subprocess.run(
        [python, "-c", "import ctdenoise.app.demo as d; print(d.__file__, d.REAL_CT)"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [env_dir / "bin" / "ctdenoise", "demo", "--preset", "tiny", "--root", str(tmp_path / "run")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "demo: LDCT | base | fine-tuned | NDCT picture:" in result.stdout
    assert (tmp_path / "run" / "report.html").is_file()
