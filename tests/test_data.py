"""The Trainer's tf.data input: unpaired, correctly normalised patches, no Python per element.

Each slice's HU encode where a pixel came from (slice, row, column), so a patch tells which
slice it was cropped from and where, and its values check the normalisation exactly.
"""

from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from ctdenoise.contract import features
from ctdenoise.contract.hu import denormalize_hu
from ctdenoise.contract.noise_level import LEVEL_UNIT_HU, noise_level_hu
from ctdenoise.dicomio.reader import SliceRecord
from ctdenoise.trainer_module import data

SIZE, PATCH, BATCH, SLICES = 16, 8, 4, 6
SLICE_STRIDE = 300
"""Slice i holds HU = i·300 + 16·row + column (0…1755: inside the training window)."""
LDCT_ONLY_HU = 2500
"""A slice beyond the window's top (2000 HU): every pixel must normalise to exactly 1."""


def _record(hu: np.ndarray) -> SliceRecord:
    return SliceRecord("x.dcm", hu.astype(np.int16), None, None, None, None, None)


def _slice(i: int) -> np.ndarray:
    rows, cols = np.mgrid[:SIZE, :SIZE]
    return i * SLICE_STRIDE + SIZE * rows + cols


@pytest.fixture(scope="module")
def tfrecord(tmp_path_factory) -> str:
    """SLICES paired positions, plus one LDCT-only position, gzip like the ingestion writes."""
    path = str(tmp_path_factory.mktemp("examples") / "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(SLICES):
            images = {"ldct": _record(_slice(i)), "ndct": _record(_slice(i))}
            writer.write(features.build_example("P1", f"z{i}", images).SerializeToString())
        only = {"ldct": _record(np.full((SIZE, SIZE), LDCT_ONLY_HU))}
        writer.write(features.build_example("P1", "ldct-only", only).SerializeToString())
    return path


def _draws(tfrecord: str, dose: str, seed: int, batches: int) -> list[tuple[int, int, int]]:
    """(slice, row, column) of each patch's top-left pixel; -1 for the LDCT-only slice.
    Checks shape, dtype, contiguity and normalisation of every patch on the way, and that its
    level map holds its slice's noise level."""
    stream = data.patch_batches([tfrecord], dose, PATCH, BATCH, seed=seed)
    drawn = []
    for batch in stream.take(batches).as_numpy_iterator():
        assert batch.shape == (BATCH, PATCH, PATCH, data.CHANNELS) and batch.dtype == np.float32
        for patch, level in zip(batch[..., 0], batch[..., 1], strict=True):
            hu = denormalize_hu(patch)
            if np.allclose(patch, 1.0):
                np.testing.assert_allclose(level, noise_level_hu(np.full((SIZE, SIZE), LDCT_ONLY_HU)) / LEVEL_UNIT_HU)
                drawn.append((-1, 0, 0))
                continue
            top = int(round(hu[0, 0]))
            i, offset = divmod(top, SLICE_STRIDE)
            row, col = divmod(offset, SIZE)
            expected = _slice(i)[row : row + PATCH, col : col + PATCH]
            np.testing.assert_allclose(hu, expected, atol=0.01)
            np.testing.assert_allclose(patch, (expected + 1024.0) / 3024.0 * 2.0 - 1.0, atol=1e-6)
            np.testing.assert_allclose(level, noise_level_hu(_slice(i)) / LEVEL_UNIT_HU, rtol=1e-6)
            drawn.append((i, row, col))
    return drawn


def test_patches_are_normalised_crops_and_each_dose_has_only_its_own_slices(tfrecord):
    ldct = _draws(tfrecord, "ldct", seed=1, batches=20)
    ndct = _draws(tfrecord, "ndct", seed=2, batches=20)
    assert {i for i, _, _ in ldct} == set(range(SLICES)) | {-1}, "every LDCT slice, the LDCT-only one too"
    assert {i for i, _, _ in ndct} == set(range(SLICES)), "the LDCT-only position has no NDCT image"
    assert len({(r, c) for _, r, c in ndct}) > 10, "crops are at random positions"


def test_ldct_and_ndct_streams_are_unpaired_and_reproducible(tfrecord):
    ldct, ndct = _draws(tfrecord, "ldct", seed=1, batches=6), _draws(tfrecord, "ndct", seed=2, batches=6)
    same_slice = sum(a[0] == b[0] for a, b in zip(ldct, ndct, strict=True))
    assert same_slice < len(ldct) / 2, "LDCT and NDCT patches must be drawn independently"
    assert _draws(tfrecord, "ldct", seed=1, batches=6) == ldct, "the same seed draws the same patches"


def _python_ops(dataset: tf.data.Dataset) -> bool:
    return b"PyFunc" in dataset._as_serialized_graph().numpy()


def test_no_python_runs_per_element(tfrecord):
    stream = data.patch_batches([tfrecord], "ldct", PATCH, BATCH, seed=1)
    assert not _python_ops(stream)
    with_python = stream.map(lambda x: tf.py_function(lambda t: t, [x], tf.float32))
    assert _python_ops(with_python), "the check itself must see a py_function"


# --- body patches and paired patches -------------------------------------------------------------

BODY_SIZE = 48
"""A slice of air with a 20-px square of soft tissue in one corner: few patches are foreground."""


@pytest.fixture(scope="module")
def body_tfrecord(tmp_path_factory) -> str:
    """Paired slices whose NDCT is its LDCT plus SLICE_OFFSET_HU: a co-located pair differs
    by exactly that everywhere the LDCT is inside the window."""
    path = str(tmp_path_factory.mktemp("body") / "data_tfrecord-00000-of-00001.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(4):
            ldct = np.full((BODY_SIZE, BODY_SIZE), -1000.0)
            ldct[4:24, 4:24] = 40.0 + 16 * i + np.arange(20)[None, :]
            ndct = ldct + SLICE_OFFSET_HU
            writer.write(
                features.build_example(
                    "P1", f"z{i}", {"ldct": _record(ldct), "ndct": _record(ndct)}
                ).SerializeToString()
            )
    return path


SLICE_OFFSET_HU = 30


def _foreground_share(batch: np.ndarray) -> np.ndarray:
    return (denormalize_hu(batch[..., 0]) > data.FOREGROUND_HU).mean(axis=(1, 2))


def test_foreground_patches_are_drawn_where_the_body_is_and_the_rest_anywhere(body_tfrecord):
    patch = 16
    everywhere = next(iter(data.patch_batches([body_tfrecord], "ldct", patch, 256, seed=3)))
    always = next(iter(data.patch_batches([body_tfrecord], "ldct", patch, 256, seed=3, foreground_patches=1.0)))
    half = next(iter(data.patch_batches([body_tfrecord], "ldct", patch, 256, seed=3, foreground_patches=0.5)))
    assert (
        np.mean(_foreground_share(everywhere.numpy()) >= data.FOREGROUND_PATCH) < 0.1
    )  # the square is 5 % of the positions
    assert np.all(_foreground_share(always.numpy()) >= data.FOREGROUND_PATCH)
    assert 0.35 < np.mean(_foreground_share(half.numpy()) >= data.FOREGROUND_PATCH) < 0.65
    again = next(iter(data.patch_batches([body_tfrecord], "ldct", patch, 256, seed=3, foreground_patches=0.5)))
    np.testing.assert_array_equal(half.numpy(), again.numpy())


def test_the_foreground_line_decides_whether_the_lungs_are_patient(tmp_path):
    """A soft-tissue square and a lung square (-850 HU) in air: the default line (-900 HU)
    draws foreground patches from both, the body line (-500 HU) from the soft tissue only."""
    hu = np.full((BODY_SIZE, BODY_SIZE), -1000.0)
    hu[:20, :20], hu[28:, 28:] = 40.0, -850.0
    path = str(tmp_path / "lung.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        writer.write(features.build_example("P1", "z0", {"ldct": _record(hu)}).SerializeToString())

    def share_above(line_hu: float, **line) -> np.ndarray:
        batch = next(iter(data.patch_batches([path], "ldct", 16, 256, seed=4, foreground_patches=1.0, **line)))
        return (denormalize_hu(batch.numpy()[..., 0]) > line_hu).mean(axis=(1, 2))

    assert data.FOREGROUND_HU == -900.0
    with_lungs = share_above(-500.0)
    assert np.all(share_above(-900.0) >= data.FOREGROUND_PATCH)
    assert 0.3 < np.mean(with_lungs >= data.FOREGROUND_PATCH) < 0.7  # the two squares, 25 positions each
    assert np.all(share_above(-500.0, foreground_hu=-500.0) >= data.FOREGROUND_PATCH)


def test_a_slice_without_a_foreground_patch_gives_its_most_foreground_one(body_tfrecord):
    share = data.foreground_share(
        tf.constant(np.where(np.arange(48)[None, :] < 8, 0.0, -1.0) * np.ones((48, 1)), tf.float32), 16
    ).numpy()
    assert share.shape == (33, 33) and share.max() == pytest.approx(0.5) and share[0, 0] == pytest.approx(0.5)
    big = next(iter(data.patch_batches([body_tfrecord], "ldct", 32, 16, seed=1, foreground_patches=1.0)))
    assert np.all(_foreground_share(big.numpy()) == pytest.approx(400 / 1024))  # the whole 20 × 20 square, never less


def test_paired_patches_are_co_located(body_tfrecord):
    ldct, ndct = next(iter(data.paired_patch_batches([body_tfrecord], 16, 64, seed=2, foreground_patches=1.0)))
    ldct, ndct = ldct[..., :1], ndct[..., :1]
    difference = denormalize_hu(ndct.numpy()) - denormalize_hu(ldct.numpy())
    assert ldct.shape == ndct.shape == (64, 16, 16, 1)
    np.testing.assert_allclose(difference[denormalize_hu(ldct.numpy()) > -500], SLICE_OFFSET_HU, atol=0.01)


def _symmetries(patch: np.ndarray) -> list[np.ndarray]:
    """The eight images of a [H, W, C] patch under the square's rotations and flips."""
    turns = [np.rot90(patch, k, axes=(0, 1)) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]


def test_augmentation_turns_each_crop_by_a_symmetry_of_the_square(tfrecord):
    """The same crops as without augmentation, each turned: every one of the eight symmetries
    occurs, and a seed gives the same turns again."""
    plain = next(iter(data.patch_batches([tfrecord], "ldct", PATCH, 256, seed=5))).numpy()
    turned = next(iter(data.patch_batches([tfrecord], "ldct", PATCH, 256, seed=5, augment=True))).numpy()
    again = next(iter(data.patch_batches([tfrecord], "ldct", PATCH, 256, seed=5, augment=True))).numpy()
    np.testing.assert_array_equal(turned, again)
    used = set()
    for before, after in zip(plain, turned, strict=True):
        matches = [k for k, image in enumerate(_symmetries(before)) if np.array_equal(image, after)]
        assert matches, "an augmented patch is not a turned copy of its crop"
        used.add(matches[0])
    assert used == set(range(8))


def test_augmented_pairs_stay_co_located(body_tfrecord):
    ldct, ndct = next(
        iter(data.paired_patch_batches([body_tfrecord], 16, 64, seed=2, foreground_patches=1.0, augment=True))
    )
    ldct_hu, ndct_hu = denormalize_hu(ldct.numpy()[..., 0]), denormalize_hu(ndct.numpy()[..., 0])
    np.testing.assert_allclose((ndct_hu - ldct_hu)[ldct_hu > -500], SLICE_OFFSET_HU, atol=0.01)
    plain, _ = next(iter(data.paired_patch_batches([body_tfrecord], 16, 64, seed=2, foreground_patches=1.0)))
    assert not np.array_equal(plain.numpy(), ldct.numpy())  # turned, yet the pair still differs only by the offset


def test_training_augments_by_default_and_evaluation_never(body_tfrecord):
    from ctdenoise.trainer_module.hparams import HParams
    from ctdenoise.trainer_module.models import configure
    from ctdenoise.trainer_module.run import training_batches

    assert HParams().augment and all(configure(name).augment for name in ("cpu-demo", "cpu-30min", "tiny"))
    settings: dict[str, Any] = {"patch": 24, "batch": 64, "seed": 1, "foreground_patches": 1.0}
    on = next(iter(training_batches([body_tfrecord], HParams(**settings))))[0].numpy()
    off = next(iter(training_batches([body_tfrecord], HParams(**settings, augment=False))))[0].numpy()
    assert not np.array_equal(on, off)
    for before, after in zip(off, on, strict=True):
        assert any(np.array_equal(image, after) for image in _symmetries(before))
    ldct, _ = data.paired_eval_slices([body_tfrecord], 10)
    tissue = denormalize_hu(ldct[..., 0]) > -500
    assert ldct.shape == (4, BODY_SIZE, BODY_SIZE, data.CHANNELS) and tissue[:, 4:24, 4:24].all()
    assert tissue.sum() == 4 * 400


def test_redrawn_noise_is_the_pairs_own_scaled_and_signed_with_its_level_following():
    """redraw_noise makes the LDCT its NDCT plus ±s times the pair's noise, one s per patch within
    [1/r, r], both signs and a spread of scales over keys, the NDCT kept, and the level map
    √(σ_N² + s²(σ_L² − σ_N²)) of the recorded levels."""
    rng = np.random.default_rng(0)
    ndct = rng.uniform(-0.5, 0.5, (16, 16, 1)).astype(np.float32)
    noise = rng.normal(0.0, 0.02, (16, 16, 1)).astype(np.float32)
    ldct_level, ndct_level = 0.2, 0.1  # 20 and 10 HU in level units
    pair = np.concatenate([ndct + noise, np.full_like(ndct, ldct_level), ndct, np.full_like(ndct, ndct_level)], -1)
    rescale, scales = 4.0, []
    for index in range(64):
        out = data.redraw_noise(tf.constant(pair), tf.constant([7, index], tf.int64), rescale).numpy()
        np.testing.assert_array_equal(out[..., 2:], pair[..., 2:])
        s = float(np.sum((out[..., :1] - ndct) * noise) / np.sum(noise * noise))
        np.testing.assert_allclose(out[..., :1], ndct + s * noise, atol=1e-6)
        np.testing.assert_allclose(
            out[..., 1], np.sqrt(ndct_level**2 + s**2 * (ldct_level**2 - ndct_level**2)), rtol=1e-5
        )
        scales.append(s)
    magnitudes = np.abs(scales)
    assert magnitudes.min() >= 1 / rescale - 1e-6 and magnitudes.max() <= rescale + 1e-6
    assert magnitudes.min() < 0.5 and magnitudes.max() > 2 and min(scales) < 0 < max(scales)
    again = data.redraw_noise(tf.constant(pair), tf.constant([7, 0], tf.int64), rescale).numpy()
    np.testing.assert_allclose(again[..., :1], ndct + scales[0] * noise, atol=1e-6)  # one key, one draw


def test_paired_training_redraws_noise_when_asked_and_unpaired_refuses_it(body_tfrecord):
    from ctdenoise.trainer_module import hparams
    from ctdenoise.trainer_module.models import configure, from_dict

    plain = next(iter(data.paired_patch_batches([body_tfrecord], 16, 64, seed=2, foreground_patches=1.0)))
    redrawn = next(
        iter(data.paired_patch_batches([body_tfrecord], 16, 64, seed=2, foreground_patches=1.0, noise_rescale=2.0))
    )
    np.testing.assert_array_equal(redrawn[1], plain[1])  # the same crops, the NDCT as it was
    tissue = denormalize_hu(plain[1].numpy()[..., 0]) > -500
    offset = denormalize_hu(plain[1].numpy()[..., 0]) - denormalize_hu(redrawn[0].numpy()[..., 0])
    magnitude = np.abs(offset[tissue]) / SLICE_OFFSET_HU  # |s| of each tissue pixel's patch
    assert magnitude.min() >= 0.5 - 1e-3 and magnitude.max() <= 2 + 1e-3 and np.ptp(magnitude) > 0.5
    assert configure("tiny", ["model=red_cnn", "noise_rescale=2"]).noise_rescale == 2
    with pytest.raises(
        ValueError, match="noise_rescale=2 redraws the noise of LDCT/NDCT pairs: model 'cycle_identity'"
    ):
        configure("tiny", ["noise_rescale=2"])
    recorded = {**hparams.to_dict(configure("tiny")), "noise_rescale": 2.0}  # as a Trainer's custom_config holds it
    with pytest.raises(ValueError, match="redraws the noise of LDCT/NDCT pairs"):
        from_dict(recorded)
