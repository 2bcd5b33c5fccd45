"""`ctdenoise denoise` refuses what would publish a wrong series or leave one half-written:
models with the product's signature names that return nonsense (real SavedModels built
here), output names the filesystem cannot stage, and SIGTERM mid-write (a real process)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ctdenoise.app.denoise import DenoiseError, denoise_series
from ctdenoise.storage.publish import staged, staging_name
from tests import dicom_factory
from tests.limits import HANG_S
from tests.pipeline_helpers import ctdenoise_cmd
from tests.saved_models import held_identity, save_module


@pytest.fixture(scope="module")
def wrong_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wrong_models")
    return {
        "nan": save_module(root / "nan", lambda hu: hu * float("nan")),
        "half": save_module(root / "half", lambda hu: hu[:, ::2, ::2]),
        "bright": save_module(root / "bright", lambda hu: hu * 0.0 + 5000.0),
        "undescribed": save_module(root / "undescribed", lambda hu: hu, described=False),
        "backslash": save_module(root / "backslash", lambda hu: hu, name="red\\cnn\x07"),
        "long name": save_module(root / "long name", lambda hu: hu, name="x" * 55),
        "negative radius": save_module(root / "negative radius", lambda hu: hu, radius=-3),
        "other input": save_module(root / "other input", lambda hu: hu, input_name="image"),
    }


def _series(root: Path, slices: int, size: int = 64) -> Path:
    for index in range(slices):
        dicom_factory.write_slice(root, "P1", "LDCT", index, z=3.0 * index, hu=dicom_factory.body_hu(size, seed=index))
    return root / "P1" / "LDCT"


@pytest.mark.parametrize(
    "name, problem",
    [
        ("nan", r"the model returned 8192 NaN or infinite values in 8192"),
        ("half", r"the model returned shape 2 × 32 × 32 × 1 for input 2 × 64 × 64 × 1"),
        ("bright", r"the model returned HU from 5000 to 5000, outside the CT scale -1024\.\.3071"),
        (
            "undescribed",
            r"the model does not say which model it is or how far it reads \(no model_name or "
            r"receptive_radius\); export it again with `ctdenoise run`$",
        ),
        (
            "backslash",
            r"the model describes itself with a name with characters DICOM text cannot hold \('\\x07', "
            r"'\\\\'\); it was not exported by `ctdenoise run`$",
        ),
        ("long name", r"the model describes itself with a name of 55 characters \(at most 54\)"),
        ("negative radius", r"the model describes itself with a negative receptive radius \(-3\)"),
        (
            "other input",
            r"the model's serving_default signature takes image and noise_hu, not hu and noise_hu: "
            r"it was not exported by this version of `ctdenoise run`$",
        ),
    ],
)
def test_a_model_returning_nonsense_is_refused_and_nothing_is_published(wrong_models, tmp_path, name, problem):
    series = _series(tmp_path / "in", slices=3)
    with pytest.raises(DenoiseError, match=f"^{wrong_models[name]}: {problem}") as error:
        denoise_series(wrong_models[name], series, tmp_path / "out" / "series", batch_size=2, progress=None)
    assert "\n" not in str(error.value)
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []  # no series, no hidden staging folder


def test_the_staging_name_is_what_publish_builds_in(tmp_path):
    with staged(str(tmp_path / "series")) as folder:
        assert len(Path(folder).name) == len(staging_name("series"))


def test_an_out_name_too_long_to_stage_is_refused_before_the_model_loads(tmp_path):
    series = _series(tmp_path / "in", slices=1)
    extra = len(staging_name("x")) - 1
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    out = tmp_path / ("x" * (limit - extra + 1))
    message = (
        rf"{out}: the folder name x{{12}}\.\.\. needs {limit + 1} bytes with its hidden staging suffix; "
        rf"this filesystem allows {limit}: choose a shorter name"
    )
    with pytest.raises(DenoiseError, match=message):
        denoise_series(tmp_path / "no-model-here", series, out, progress=None)  # a model error would come later
    with pytest.raises(DenoiseError, match=r"no saved_model\.pb"):  # one byte shorter passes the check
        denoise_series(tmp_path / "no-model-here", series, tmp_path / ("x" * (limit - extra)), progress=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_sigterm_mid_write_removes_the_partial_series(tmp_path):
    release = tmp_path / "slow" / "release"
    model = save_module(tmp_path / "slow", held_identity(str(tmp_path / ".out.partial-*" / "0001.dcm"), str(release)))
    series = _series(tmp_path / "in", slices=4)
    out = tmp_path / "out"
    process = subprocess.Popen(
        ctdenoise_cmd("denoise", "--model", str(model), "--input", str(series), "--out", str(out), "--batch", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + HANG_S
    while not list(tmp_path.glob(".out.partial-*/0001.dcm")) and process.poll() is None:
        assert time.monotonic() < deadline, "denoise never started writing"
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    release.touch()  # the signal is pending: the call returns and the handler runs
    _, stderr = process.communicate(timeout=HANG_S)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1] == "ctdenoise: terminated"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "slow"]  # no series, no hidden partial folder


def test_a_batch_larger_than_memory_is_refused_before_denoising(tmp_path):
    """`--batch` against the memory available: a model whose widest layer has 4096 channels
    cannot take 100,000 slices of 64² at once, and says which batch would fit."""
    import tf_keras as keras

    from tests.saved_models import export_layer

    wide = keras.Sequential([keras.layers.Conv2D(4096, 1), keras.layers.Conv2D(1, 1)])
    model = export_layer(tmp_path / "wide", wide)
    series = _series(tmp_path / "in", slices=2)
    with pytest.raises(DenoiseError) as refused:
        denoise_series(model, series, tmp_path / "out", batch_size=100_000, progress=None)
    assert re.fullmatch(
        r"--batch 100000: slices of 4,096 pixels through layers of 4096 channels need about [\d,.]+ GiB, "
        r"more than the [\d,.]+ GiB available; use --batch \d+ or less",
        str(refused.value),
    )
    assert not (tmp_path / "out").exists()
