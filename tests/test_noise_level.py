"""The noise-level input (docs/design.md, "Noise-level input"): the estimate every denoiser is
given, and a model that uses it: told a slice's true level it does better than told a level 4×
wrong, through `ctdenoise denoise`'s default and its `--strength`."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path

import numpy as np
import pydicom
import pytest
import tensorflow as tf
from scipy.ndimage import gaussian_filter

from ctdenoise.app.denoise import DenoiseError, denoise_series
from ctdenoise.contract.hu import unit_from_hu
from ctdenoise.contract.noise_level import _finest_scale_level, check_level, noise_level_hu
from ctdenoise.simulator.phantom import random_anatomy, render
from ctdenoise.trainer_module.data import at_level
from ctdenoise.trainer_module.export import Description, export_generator
from ctdenoise.trainer_module.loop import fit
from ctdenoise.trainer_module.models import build, configure
from tests import dicom_factory

SIZE = 96
LEVELS_HU = (5.0, 80.0)
"""Training noise levels are drawn from this range, one per slice."""


def _soft_tissue_disc(size: int = 256) -> np.ndarray:
    """Water in a disc inside air padded with -2000 HU, as scanners pad outside their field of view."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    hu = np.full((size, size), -2000.0)
    hu[xx**2 + yy**2 < (0.45 * size) ** 2] = -1000.0
    hu[xx**2 + yy**2 < (0.3 * size) ** 2] = 40.0
    return hu


@pytest.mark.parametrize("sigma", [5.0, 20.0, 60.0])
def test_the_level_reads_white_noise_in_soft_tissue_whatever_the_padding(sigma):
    """Air and padding (most of the slice, noise-free) do not pull it down."""
    truth = _soft_tissue_disc()
    noisy = truth + np.where(truth > -1500, np.random.default_rng(0).normal(0, sigma, truth.shape), 0.0)
    assert noise_level_hu(noisy) == pytest.approx(sigma, rel=0.08)


def test_a_smooth_kernels_noise_reads_as_its_whole_standard_deviation():
    """Noise of one standard deviation reads alike whatever its grain, as two reconstruction kernels' noise of equal
    level should; a finest-scale (Haar) estimate reads the coarse grain several times lower."""
    truth = _soft_tissue_disc()
    white = np.random.default_rng(1).normal(0, 1, truth.shape)
    coarse = gaussian_filter(white, 1.0)
    fine, smooth = (noise_level_hu(truth + 30 * noise / noise.std()) for noise in (white, coarse))
    assert fine == pytest.approx(30, rel=0.08) and smooth == pytest.approx(fine, rel=0.12)
    assert _finest_scale_level(truth + 30 * coarse / coarse.std()) < 0.3 * smooth


def test_a_slice_without_flat_soft_tissue_still_reads():
    """Too small for flat regions, or no body at all: the finest-scale estimate, never a failure."""
    assert noise_level_hu(np.full((64, 64), -1000.0)) == 0.0
    assert noise_level_hu(np.random.default_rng(2).normal(-1000, 10, (63, 65))) == pytest.approx(10, rel=0.15)
    small = np.random.default_rng(3).normal(40, 12, (32, 32))
    assert noise_level_hu(small) == pytest.approx(12, rel=0.2)


@pytest.mark.parametrize("level", [0.0, -3.0, float("nan"), float("inf"), 1e4])
def test_a_level_a_user_cannot_mean_is_refused_in_one_line(level):
    with pytest.raises(ValueError, match=r"^noise level .* HU is outside 0\.5–500 HU$"):
        check_level(level)


def _noisy(truth: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(truth + rng.normal(0.0, sigma, truth.shape), -1000.0, 2000.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A small RED-CNN trained on phantom slices with white noise of a level drawn per slice
    from LEVELS_HU, each given its estimated level as ingestion records it; exported as the
    Trainer exports. Returns the model folder and held-out truths (other anatomy)."""
    root = tmp_path_factory.mktemp("level")
    rng = np.random.default_rng(0)
    truths = [render(random_anatomy(rng), SIZE, 3.0, z) for z in np.linspace(-60, 60, 24)]
    held_out = [render(random_anatomy(rng), SIZE, 3.0, z) for z in (-20.0, 0.0, 20.0)]
    inputs, targets = [], []
    for _ in range(400):
        truth = truths[rng.integers(len(truths))]
        noisy = _noisy(truth, rng.uniform(*LEVELS_HU), rng)
        image = unit_from_hu(noisy)[..., np.newaxis].astype(np.float32)
        inputs.append(at_level(image, noise_level_hu(noisy)).numpy())
        targets.append(unit_from_hu(truth)[..., np.newaxis].astype(np.float32))
    hp = configure(
        "tiny",
        ["model=red_cnn", "red_channels=8", "patch=32", "batch=16", "steps_per_epoch=300", "lr=0.001", "augment=false"],
    )

    def crop(index: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        key = tf.stack([tf.constant(1, tf.int64), index])
        both = tf.image.stateless_random_crop(tf.concat(pair, -1), [hp.patch, hp.patch, 3], seed=key)
        return both[..., :2], both[..., 2:]

    batches = (
        tf.data.Dataset.from_tensor_slices((np.stack(inputs), np.stack(targets)))
        .shuffle(400, seed=1)
        .repeat()
        .enumerate()
        .map(crop)
        .batch(hp.batch)
    )
    model = build(hp)
    fit(model, batches, root / "checkpoints", root / "logs", progress=lambda _line: None)
    export_generator(model.generator, Description.of(model), str(root / "model"), {"test": True})
    return root / "model", held_out


def _series(folder: Path, images: list[np.ndarray]) -> Path:
    for index, hu in enumerate(images, 1):
        dicom_factory.write_slice(folder, "P1", "LDCT", index, float(index), hu=hu)
    return folder / "P1" / "LDCT"


def _hu(folder: Path) -> list[np.ndarray]:
    """The HU of each slice in `folder`, in file order."""
    slices = [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]
    return [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices]


def _in_body_rmse(images: list[np.ndarray], truths: list[np.ndarray]) -> float:
    errors = [(image - truth)[truth > -500] for image, truth in zip(images, truths, strict=True)]
    return float(np.sqrt(np.mean(np.concatenate(errors) ** 2)))


@pytest.mark.parametrize("sigma", [15.0, 40.0])
def test_the_true_level_beats_a_level_four_times_wrong(trained, tmp_path, sigma):
    """`denoise` estimates each slice's level; `--strength` 4× above it over-smooths, 4× below
    leaves noise. The derived series says which level it used."""
    model, truths = trained
    rng = np.random.default_rng(int(sigma))
    source = _series(tmp_path / "in", [_noisy(truth, sigma, rng) for truth in truths])
    noisy = _hu(source)
    estimate = float(np.mean([noise_level_hu(x) for x in noisy]))
    lines: list[str] = []
    denoise_series(model, source, tmp_path / "estimated", progress=lines.append)
    rmse = {"LDCT": _in_body_rmse(noisy, truths), "estimated": _in_body_rmse(_hu(tmp_path / "estimated"), truths)}
    for name, factor in (("4x above", 4.0), ("4x below", 0.25)):
        denoise_series(model, source, tmp_path / name, strength_hu=factor * estimate, progress=None)
        rmse[name] = _in_body_rmse(_hu(tmp_path / name), truths)
    assert rmse["estimated"] < min(rmse["4x above"], rmse["4x below"], rmse["LDCT"]), rmse
    first = pydicom.dcmread(tmp_path / "estimated" / "0001.dcm")
    level = f"noise level {noise_level_hu(noisy[0]):.1f} HU"
    assert first.DerivationDescription.endswith(f"{level}, estimated from the slice")
    given = pydicom.dcmread(tmp_path / "4x above" / "0001.dcm")
    assert given.DerivationDescription.endswith(f"noise level {4 * estimate:.1f} HU, given")
    assert given.SOPInstanceUID != first.SOPInstanceUID  # another strength, other pixels: other UIDs
    assert any("noise level" in line for line in lines)


def test_a_strength_outside_the_range_is_refused_before_the_model_loads(trained, tmp_path):
    model, truths = trained
    source = _series(tmp_path / "in", truths[:1])
    with pytest.raises(DenoiseError, match=r"^--strength: noise level 0\.0 HU is outside 0\.5–500 HU$"):
        denoise_series(model, source, tmp_path / "out", strength_hu=0.0, progress=None)
    assert not (tmp_path / "out").exists()
