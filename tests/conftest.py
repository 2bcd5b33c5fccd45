"""Shared test set-up: quiet TensorFlow start-up noise (errors still fail tests), and one
end-to-end pipeline run that the train, evaluate/push and lineage tests all read."""
import json
import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

PERMISSIVE_GATE = ["--margin-db", "-100", "--ssim-tolerance", "2"]
"""Thresholds any finite model passes: ten `tiny` steps cannot beat LDCT, and the lineage
tests need a chain that reaches a pushed model. The gate itself is tested with real
thresholds in test_evaluation_gate.py."""


@pytest.fixture(scope="session")
def simulated_data(tmp_path_factory) -> Path:
    """Three simulated patients (one held out), three 64² slice pairs each."""
    from pipeline.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("simulated") / "dicom"
    simulate_dataset(root, patients=3, slices=3, size=64, seed=5, progress=None)
    return root


@pytest.fixture(scope="session")
def pushed_run(simulated_data, tmp_path_factory):
    """`ctdenoise run --until push --preset tiny` on the simulated data:
    (run root, summary dict, stdout)."""
    from tests.pipeline_helpers import ctdenoise

    run_root = tmp_path_factory.mktemp("pushed_run")
    result = ctdenoise("run", "--data", str(simulated_data), "--root", str(run_root), "--until", "push",
                       "--preset", "tiny", *PERMISSIVE_GATE, "--summary", str(run_root / "s.json"))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_root, json.loads((run_root / "s.json").read_text()), result.stdout
