"""Shared test set-up: quiet TensorFlow start-up noise (errors still fail tests), one
end-to-end pipeline run that the train, evaluate/push and lineage tests all read, and an
S3 object store on the loopback (tests/object_store.py)."""

import json
import os
import sys
import warnings
from pathlib import Path

import pytest

import ctdenoise.tensorflow_env  # noqa: F401  (before TensorFlow is imported by any test)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the commands the tests run print what a user sees
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", category=DeprecationWarning)

PERMISSIVE_GATE = [
    "--margin-db",
    "-100",
    "--ssim-tolerance",
    "2",
    "--body-rmse-margin",
    "-1000000",
    "--body-ssim-tolerance",
    "2",
]
"""Thresholds any finite model passes: ten `tiny` steps cannot beat LDCT, and the lineage
tests need a chain that reaches a pushed model. The in-body RMSE margin is a ratio to the LDCT's,
which on the tests' coarse 64 px slices (5.9 mm pixels: under a HU of noise) is tiny. The gate
itself is tested with real thresholds in test_evaluation_gate.py."""


@pytest.fixture(scope="session")
def simulated_data(tmp_path_factory) -> Path:
    """Three simulated patients (one held out), three 64² slice pairs each."""
    from ctdenoise.simulator.dataset import simulate_dataset

    root = tmp_path_factory.mktemp("simulated") / "dicom"
    simulate_dataset(root, patients=3, slices=3, size=64, seed=5, progress=None)
    return root


@pytest.fixture(scope="session")
def pushed_run(simulated_data, tmp_path_factory):
    """`ctdenoise run --until push --preset tiny` on the simulated data:
    (run root, summary dict, stdout); its TMPDIR is the sibling folder RUN_ROOT_tmpdir."""
    from tests.pipeline_helpers import ctdenoise

    run_root = tmp_path_factory.mktemp("pushed_run")
    temp = run_root.parent / f"{run_root.name}_tmpdir"  # what the run leaves in TMPDIR is checked
    temp.mkdir()
    result = ctdenoise(
        "run",
        "--data",
        str(simulated_data),
        "--root",
        str(run_root),
        "--until",
        "push",
        "--preset",
        "tiny",
        *PERMISSIVE_GATE,
        "--summary",
        str(run_root / "s.json"),
        env={"TMPDIR": str(temp)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_root, json.loads((run_root / "s.json").read_text()), result.stdout


@pytest.fixture(scope="session")
def object_store():
    """A moto S3 server on a free loopback port with an empty bucket, the environment
    pointing TensorFlow, boto3 and Beam (and every child process) at it; stopped at the
    end of the session, also when tests failed."""
    from tests.object_store import start_object_store

    yield from start_object_store()


PUSHED_RUN_FILES = ("tests/test_pipeline_push.py", "tests/test_pipeline_train.py", "tests/test_report.py")
"""The test files that read `pushed_run`: under pytest-xdist they run on one worker."""


def _file(item_or_nodeid) -> str:
    return getattr(item_or_nodeid, "nodeid", item_or_nodeid).split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)  # xdist's hook: without xdist (`-p no:xdist`) it is never called
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs the suite on two pytest-xdist workers (`-n 2`). A work unit is a test
    file, so each module fixture is built once, and the PUSHED_RUN_FILES are one unit, so the
    session's pushed run is made once. (xdist's own `--dist loadgroup` marks do not reach
    pytest 9's node ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "pushed_run" if _file(nodeid) in PUSHED_RUN_FILES else _file(nodeid)

    return ByFile(config, log)


def pytest_collection_modifyitems(config, items):
    """The files with end-to-end runs go first, so that the two workers finish at about the
    same time (`--no-loadscope-reorder` keeps this order); a file that reads `pushed_run`
    must be one of PUSHED_RUN_FILES."""
    readers = {_file(item) for item in items if "pushed_run" in getattr(item, "fixturenames", ())}
    if not readers <= set(PUSHED_RUN_FILES):
        raise pytest.UsageError(f"add {sorted(readers - set(PUSHED_RUN_FILES))} to tests/conftest.py PUSHED_RUN_FILES")
    heavy = {_file(item) for item in items if item.get_closest_marker("slow")} | readers
    items.sort(key=lambda item: _file(item) not in heavy)  # stable: file order otherwise


def pytest_sessionfinish(session, exitstatus):
    session.config._ctdenoise_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Should a test have loaded tensorflow-io into this process, leave without the AWS SDK's
    exit-time abort (tensorflow/io#2039) and keep pytest's own exit status."""
    if "tensorflow_io" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(getattr(config, "_ctdenoise_exitstatus", 0))
