"""The model family (docs/design.md, "The model family"): each model trains only what it uses, every model goes
through the same pipeline to a pushed SavedModel that `denoise` runs and names, and a
hyperparameter the chosen model does not read is refused before anything runs."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydicom
import pytest
import tensorflow as tf
import tf_keras as keras

from ctdenoise.simulator.dataset import simulate_dataset
from ctdenoise.trainer_module import hparams
from ctdenoise.trainer_module.data import CHANNELS, at_level, image_of
from ctdenoise.trainer_module.models import MODELS, build, configure, preset
from ctdenoise.trainer_module.models.red_cnn.network import build_red_cnn
from ctdenoise.trainer_module.models.red_cnn.params import RedCNNParams
from tests.dicom_validators import assert_derived_series_valid
from tests.pipeline_helpers import assert_denoised_by, ctdenoise, ingest, run_tiny_to_push


def _patches(hp: hparams.HParams, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Random LDCT and NDCT patches, each with a 20 HU level map beside it (the networks' input)."""
    rng = np.random.default_rng(seed)
    images = (tf.constant(rng.uniform(-1, 1, (hp.batch, hp.patch, hp.patch, 1)), tf.float32) for _ in range(2))
    return tuple(at_level(image, 20.0) for image in images)


def _step_variables(model) -> list[tf.Variable]:
    """The trainable variables one traced train step reads: those its gradients can touch."""
    a, b = _patches(model.hp, 0)
    return list(model.train_step.get_concrete_function(a, b).trainable_variables)


def test_a_red_cnn_step_trains_its_one_network_and_builds_nothing_else():
    model = build(configure("tiny", ["model=red_cnn"]))
    network = model.generator.trainable_variables
    assert {id(v) for v in _step_variables(model)} == {id(v) for v in network}
    assert {id(v) for v in model.trainable_variables} == {id(v) for v in network}  # no D, no second generator
    low, _ = _patches(model.hp, 1)
    np.testing.assert_array_equal(model.generator(low).numpy(), image_of(low).numpy())  # starts as the identity
    before = [v.numpy() for v in network]
    for _ in range(2):  # the first step moves only the zeroed last layer: the rest get its gradient after
        losses = model.train_step(*_patches(model.hp, 1))
    assert set(losses) == {"mse", "lr"} and model.completed_steps == 2
    # every weight learnt
    assert all(not np.array_equal(old, v.numpy()) for old, v in zip(before, network, strict=True))


def test_the_cycle_identity_step_trains_all_four_networks_and_cyclegan_skips_the_identity_term():
    full = build(preset("tiny"))
    four = (
        full.G.trainable_variables
        + full.F.trainable_variables
        + full.D_A.trainable_variables
        + full.D_B.trainable_variables
    )
    assert {id(v) for v in _step_variables(full)} == {id(v) for v in four}
    plain = build(configure("tiny", ["model=cyclegan"]))
    losses = plain.train_step(*_patches(plain.hp, 1))
    assert "identity" not in losses and {"cycle", "g_adv_ab", "g_adv_ba", "d_a", "d_b"} <= set(losses)


def test_the_paper_size_red_cnn_has_the_papers_layers_and_about_1_85_million_weights():
    hp = preset("paper", RedCNNParams)
    network = build_red_cnn(hp)
    assert network.count_params() == 1_848_865 + 5 * 5 * 96  # the paper's, and the level map's first-layer kernels
    image = tf.zeros([1, 64, 48, CHANNELS])
    assert network(image).shape == [1, 64, 48, 1]  # the decoder restores the size
    convs = [layer for layer in network.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 10 and {layer.kernel_size for layer in convs} == {(5, 5)}


def test_the_registry_refuses_a_declaration_it_cannot_use():
    from ctdenoise.trainer_module.models import _check_declaration
    from ctdenoise.trainer_module.models.red_cnn.model import RedCNN

    @dataclasses.dataclass(frozen=True)
    class Misnamed(RedCNNParams):
        PRESETS: ClassVar = {"cpu-dmeo": {"red_channels": 8}}

    class Renamed(RedCNN):
        NAME = "renamed"

    with pytest.raises(ImportError, match=r"model 'renamed': its Params' model default is 'red_cnn'"):
        _check_declaration(Renamed)
    Renamed.NAME, Renamed.PARAMS = "red_cnn", Misnamed
    with pytest.raises(ImportError, match=r"presets \['cpu-dmeo'\] are not among"):
        _check_declaration(Renamed)


@pytest.mark.parametrize(
    "overrides", [["model=red_cnn", "red_channels=8"], ["model=cyclegan", "cycle_lambda=3"], ["identity_gamma=1"]]
)
def test_keys_the_chosen_model_reads_are_accepted(overrides):
    hp = configure("tiny", overrides)
    assert hp.model in MODELS


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory) -> Path:
    """A VGG19-without-top weights file of the right shapes and random values, written by Keras
    as keras.applications' ImageNet file is: it checks the loading mechanics, not perceptual
    quality (ImageNet's weights cannot be downloaded here)."""
    path = tmp_path_factory.mktemp("vgg") / "vgg19_random_notop.h5"
    keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3)).save_weights(str(path))
    return path


def test_wgan_vgg_trains_its_generator_and_critic_on_the_given_vgg_file(vgg_weights):
    model = build(configure("tiny", ["model=wgan_vgg", f"vgg_weights={vgg_weights}"]))
    trained = model.G.trainable_variables + model.D.trainable_variables
    before = [v.numpy() for v in trained]
    vgg_before = [v.numpy() for v in model.vgg.variables]
    losses = model.train_step(*_patches(model.hp, 1))
    assert {"g_total", "perceptual", "critic", "wasserstein", "gradient_penalty"} <= set(losses)
    # every kernel learnt (the critic's output bias cancels in D(real) - D(fake): no gradient)
    assert all(not np.array_equal(old, v.numpy()) for old, v in zip(before, trained, strict=True) if "kernel" in v.name)
    assert all(np.array_equal(old, v.numpy()) for old, v in zip(vgg_before, model.vgg.variables, strict=True))  # frozen


def _wrong_weights(path: Path) -> Path:
    """A Keras weights file of another network (a small convolution stack)."""
    image = keras.Input((None, None, 3))
    keras.Model(image, keras.layers.Conv2D(8, 3)(image)).save_weights(str(path))
    return path


@pytest.mark.parametrize(
    "weights, message",
    [
        (
            None,
            "model wgan_vgg needs VGG19 weights: --set vgg_weights=FILE (a Keras weights file of VGG19 without "
            "its top; nothing is downloaded)",
        ),
        ("missing.h5", "vgg_weights={path}: no such file"),
        ("other.h5", "vgg_weights={path}: not VGG19's weights without its top ("),
    ],
)
def test_wgan_vgg_without_usable_vgg_weights_is_refused_in_one_line_before_anything_runs(tmp_path, weights, message):
    sets = ["--set", "model=wgan_vgg"]
    if weights:
        path = tmp_path / weights
        if weights == "other.h5":
            _wrong_weights(path)
        sets += ["--set", f"vgg_weights={path}"]
        message = message.format(path=path)
    result = ctdenoise("run", "--data", str(tmp_path), "--root", str(tmp_path / "run"), "--preset", "tiny", *sets)
    assert result.returncode == 1 and not (tmp_path / "run").exists()
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ctdenoise: error: {message}")


def _ldct_only(root: Path) -> Path:
    """Real simulated DICOM with every patient's NDCT folder taken away: no pair can form."""
    simulate_dataset(root, patients=2, slices=1, size=32, seed=5, progress=None)
    for ndct in root.glob("*/NDCT"):
        for f in ndct.iterdir():
            f.unlink()
        ndct.rmdir()
    return root


def test_a_paired_model_on_data_without_pairs_is_refused_in_one_line_before_anything_runs(tmp_path):
    data = _ldct_only(tmp_path / "data")
    result = ctdenoise("run", "--data", str(data), "--root", str(tmp_path / "run"), "--set", "model=red_cnn")
    assert result.returncode == 1 and not (tmp_path / "run").exists()
    assert result.stderr.strip().splitlines() == [
        f"ctdenoise: error: model red_cnn trains on co-located LDCT/NDCT pairs, but no patient under {data} has "
        "files in both <LDCT> and <NDCT>"
    ]


def test_the_trainer_refuses_a_paired_model_when_its_train_split_holds_no_pair(tmp_path):
    from ctdenoise.trainer_module.run import fn_args, run_fn

    ingest(_ldct_only(tmp_path / "data"), tmp_path / "out")
    hp = configure("tiny", ["model=red_cnn"])
    with pytest.raises(
        ValueError, match="^model red_cnn trains on co-located LDCT/NDCT pairs, and the train split holds none"
    ):
        run_fn(fn_args(str(tmp_path / "out"), str(tmp_path / "run"), str(tmp_path / "model"), hp, eval_slices=1))


@pytest.mark.slow
def test_wgan_vgg_reaches_push_and_denoise_names_it(simulated_data, vgg_weights, tmp_path):
    """The family's other models each reach push in an end-to-end test that runs anyway:
    cycle_identity in the session's `pushed_run`, cyclegan in tests/test_pipeline_s3.py,
    red_cnn in tests/test_pacs.py; wgan_vgg, which needs a VGG19 file, here."""
    root, summary_path, out = tmp_path / "run", tmp_path / "summary.json", tmp_path / "denoised"
    result = run_tiny_to_push(simulated_data, root, summary_path, "model=wgan_vgg", f"vgg_weights={vgg_weights}")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["push"]["pushed"], summary
    result = ctdenoise(
        "denoise",
        "--model",
        "latest",
        "--root",
        str(root),
        "--input",
        str(simulated_data / "SIM001" / "LDCT"),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    derivation = pydicom.dcmread(sorted(out.glob("*.dcm"))[0]).DerivationDescription
    assert_denoised_by("wgan_vgg", summary, result.stdout, derivation)
    assert_derived_series_valid(simulated_data / "SIM001" / "LDCT", out)
    metadata = json.loads((Path(summary["push"]["path"]) / "ctdenoise_model.json").read_text())
    assert metadata["hparams"]["model"] == "wgan_vgg"
