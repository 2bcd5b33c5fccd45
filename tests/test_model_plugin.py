"""Adding a model edits nothing outside its folder (docs/design.md, "Adding a model"): a toy model
in its own distribution (tests/toy_model), installed into a temporary folder, is found through the
`ctdenoise.models` entry-point group, takes its own `--set` keys and its `tiny` size, trains
through push and is what `denoise` names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from tests.pipeline_helpers import assert_denoised_by, ctdenoise, run_tiny_to_push

TOY = Path(__file__).parent / "toy_model"


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory) -> dict[str, str]:
    """The toy distribution installed by pip into a temporary folder (not this environment),
    as the environment variables that put it on a process's path."""
    source, site = tmp_path_factory.mktemp("toy") / "toy_model", tmp_path_factory.mktemp("site")
    shutil.copytree(TOY, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert list(site.glob("ctdenoise_toy-*.dist-info"))
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


def test_without_the_toy_installed_the_model_is_unknown(tmp_path):
    result = ctdenoise("run", "--data", str(tmp_path), "--root", str(tmp_path / "run"), "--set", "model=toy")
    assert result.returncode == 1
    assert result.stderr.strip().endswith("unknown model 'toy'; known: cycle_identity, cyclegan, red_cnn, wgan_vgg")


def test_its_own_keys_are_checked_and_refused_for_other_models(toy_site, tmp_path):
    run = ["run", "--data", str(tmp_path), "--root", str(tmp_path / "run"), "--preset", "tiny"]
    refused = ctdenoise(*run, "--set", "model=toy", "--set", "toy_channels=0", env=toy_site)
    assert refused.stderr.strip().splitlines() == ["ctdenoise: error: toy_channels must be >= 1, got 0"]
    elsewhere = ctdenoise(*run, "--set", "toy_channels=3", env=toy_site)
    assert elsewhere.stderr.strip().splitlines() == [
        "ctdenoise: error: hyperparameter 'toy_channels' does not apply to model 'cycle_identity' (it is read by toy)"
    ]
    huge = ctdenoise(*run, "--set", "model=toy", "--set", "toy_channels=1000000000", env=toy_site)
    assert huge.stderr.startswith("ctdenoise: error: model toy: toy_channels=1000000000, patch=32, batch=2: training")


@pytest.mark.slow
def test_the_toy_trains_through_push_and_denoise_names_it(toy_site, simulated_data, tmp_path):
    root, summary_path, out = tmp_path / "run", tmp_path / "summary.json", tmp_path / "denoised"
    result = run_tiny_to_push(simulated_data, root, summary_path, "model=toy", env=toy_site)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["push"]["pushed"], summary
    metadata = json.loads((Path(summary["push"]["path"]) / "ctdenoise_model.json").read_text())
    assert metadata["hparams"]["model"] == "toy" and metadata["hparams"]["toy_channels"] == 2  # its tiny size
    # The exported SavedModel runs without the toy's code.
    args = ["--model", "latest", "--root", str(root), "--input", str(simulated_data / "SIM001" / "LDCT")]
    result = ctdenoise("denoise", *args, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    derivation = pydicom.dcmread(sorted(out.glob("*.dcm"))[0]).DerivationDescription
    assert_denoised_by("toy", summary, result.stdout, derivation)
