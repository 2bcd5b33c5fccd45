"""The blessing gate with the real Evaluator (TFMA) and Pusher on LocalDagRunner.

Candidates are SavedModels exported exactly as the Trainer exports its generator, but built
by hand so their quality is known: a slight Gaussian blur (removes some LDCT noise: better
than LDCT) and a generator that adds noise (worse). The pipeline pieces are the product's
own `build_baseline`, `build_evaluator` and `build_pusher`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from scipy.ndimage import gaussian_filter
from tfx import v1 as tfx

from ctdenoise.components.evaluation import metric_table
from ctdenoise.contract import features
from ctdenoise.contract.hu import denormalize_hu, normalize_hu
from ctdenoise.metadata import names
from ctdenoise.metadata.queries import open_store, run_ids
from ctdenoise.metadata.store import StoreAddress
from ctdenoise.metadata.summary import build_summary
from ctdenoise.pipeline.pipeline import build_baseline, build_evaluator, build_pusher
from ctdenoise.simulator.dataset import simulate_dataset
from ctdenoise.trainer_module.export import Description, export_generator
from ctdenoise.trainer_module.models.layers import generator_input
from tests.pipeline_helpers import ingest, read_examples

BLUR_SIGMA = 0.5
"""Pixels; on the fixture's LDCT (dose 0.005) it gains more than the gate's 0.5 dB and 10 % in-body RMSE."""


def _blur_kernel(sigma: float, size: int = 5) -> np.ndarray:
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1.0
    return gaussian_filter(impulse, sigma, mode="constant").astype(np.float32)[:, :, np.newaxis, np.newaxis]


def _blur(images: tf.Tensor) -> tf.Tensor:
    """Gaussian blur with mirrored borders (zero padding would pull edges towards +500 HU)."""
    kernel = _blur_kernel(BLUR_SIGMA)
    half = kernel.shape[0] // 2
    padded = tf.pad(images, [[0, 0], [half, half], [half, half], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


class _Blur(keras.layers.Layer):
    """A crude but sound denoiser."""

    def call(self, inputs):
        return _blur(inputs)


class _AddNoise(keras.layers.Layer):
    """A broken generator: adds white noise (0.05 in [-1, 1] units, 75 HU) at inference."""

    def call(self, inputs):
        return inputs + tf.random.normal(tf.shape(inputs), stddev=0.05, seed=1)


def _export(folder: Path, layer: keras.layers.Layer) -> str:
    """A Model artifact folder (SavedModel under Format-Serving, as the Trainer writes it)."""
    inputs, image = generator_input()
    export_generator(
        keras.Model(inputs, layer(image)),
        Description(folder.name, 0),
        str(folder / "Format-Serving"),
        {"test": folder.name},
    )
    return str(folder)


@pytest.fixture(scope="module")
def examples_uri(tmp_path_factory) -> str:
    """Ingested simulated data: two patients, one in each split."""
    root = tmp_path_factory.mktemp("gate")
    # dose 0.005: at 1.5 mm pixels the phantoms' full dose has some 6 HU of noise, and the smooth kernel's noise is
    # coarse: a slight blur gains over the LDCT only where noise, not edges, dominates the error
    simulate_dataset(root / "dicom", patients=2, slices=3, size=256, seed=11, dose=0.005, progress=None)
    ingest(root / "dicom", root / "examples", eval_fraction=0.5)
    return str(root / "examples")


@pytest.fixture(scope="module")
def gate_runs(examples_uri, tmp_path_factory):
    """A good candidate, then a bad one, through the same pipeline root and ML Metadata."""
    root = tmp_path_factory.mktemp("gate_run")
    models = {"good": _export(root / "good", _Blur()), "bad": _export(root / "bad", _AddNoise())}
    summaries = {}
    for name in ("good", "bad"):
        _run_gate(examples_uri, models[name], root)
        store = open_store(root)
        summaries[name] = build_summary(store, max(run_ids(store)))
    return root, summaries


def _run_gate(examples_uri: str, model_uri: str, root: Path) -> None:
    examples = tfx.dsl.Importer(
        source_uri=examples_uri,
        artifact_type=tfx.types.standard_artifacts.Examples,
        properties={"split_names": '["train", "eval"]'},
    ).with_id("ImportExamples")
    model = tfx.dsl.Importer(source_uri=model_uri, artifact_type=tfx.types.standard_artifacts.Model).with_id(
        "ImportModel"
    )
    resolver = build_baseline(warm_start=None)  # the latest blessed model
    evaluator = build_evaluator(
        examples.outputs["result"], model.outputs["result"], baseline_model=resolver.outputs["model"]
    )
    pusher = build_pusher(model.outputs["result"], evaluator.outputs["blessing"], str(names.serving_dir(root)))
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name=names.PIPELINE_NAME,
            pipeline_root=str(root / "pipeline"),
            components=[examples, model, resolver, evaluator, pusher],
            metadata_connection_config=StoreAddress().connection_config(root),
            enable_cache=False,
        )
    )


def test_a_better_than_ldct_candidate_is_blessed_and_pushed(gate_runs):
    root, summaries = gate_runs
    evaluation, push = summaries["good"]["evaluation"], summaries["good"]["push"]
    overall = evaluation["overall"]
    assert evaluation["blessed"] and evaluation["failures"] == []
    assert overall["candidate"]["psnr_gain"] >= 0.5
    assert overall["candidate"]["psnr"] > overall["ldct"]["psnr"] + 0.5
    assert overall["candidate"]["ssim"] >= overall["ldct"]["ssim"]
    assert push["pushed"] and Path(push["path"], "saved_model.pb").is_file()
    assert Path(push["path"]).parent == names.serving_dir(root)


def test_a_noisy_candidate_is_refused_and_nothing_is_pushed(gate_runs):
    root, summaries = gate_runs
    evaluation, push = summaries["bad"]["evaluation"], summaries["bad"]["push"]
    assert not evaluation["blessed"]
    assert evaluation["overall"]["candidate"]["psnr_gain"] < 0
    failed = " ".join(evaluation["failures"])
    assert "psnr_gain" in failed and "change vs baseline" in failed  # the good model is its baseline
    assert evaluation["overall"]["baseline"]["psnr"] > evaluation["overall"]["candidate"]["psnr"]
    assert push == {"pushed": False, "path": None, "version": None}
    assert [p.name for p in names.serving_dir(root).iterdir()] == [Path(summaries["good"]["push"]["path"]).name]


def test_the_evaluator_and_the_metric_table_agree_on_the_eval_slices(examples_uri, gate_runs):
    """The Evaluator's numbers, recomputed here from the eval examples with the metric table
    alone (no TFMA, no Beam), as the benchmarks compute them: every entry for the LDCT and
    the candidate, and every comparison the gate judges."""
    _, summaries = gate_runs
    ldct, ndct, denoised = [], [], []
    for example in read_examples(Path(examples_uri), "eval"):
        feats = example.features.feature
        height, width = feats[features.HEIGHT].int64_list.value[0], feats[features.WIDTH].int64_list.value[0]
        low, normal = (
            features.decode_hu(feats[features.image_key(d)].bytes_list.value[0], height, width) for d in features.DOSES
        )
        blurred = _blur(normalize_hu(low)[np.newaxis, :, :, np.newaxis].astype(np.float32)).numpy()[0, :, :, 0]
        ldct.append(low)
        ndct.append(normal)
        denoised.append(denormalize_hu(blurred))
    overall = summaries["good"]["evaluation"]["overall"]
    for entry in metric_table.METRICS:
        for role, images in (("ldct", ldct), ("candidate", denoised)):
            assert overall[role][entry.name] == pytest.approx(metric_table.score(entry, images, ndct), rel=1e-4), (
                role,
                entry.name,
            )
    for name, value in metric_table.gate(np.stack(denoised), np.stack(ldct), np.stack(ndct)).items():
        expected = overall["candidate"][name] if name != "blessed" else summaries["good"]["evaluation"]["blessed"]
        assert value == pytest.approx(expected, rel=1e-3, abs=1e-5), name
    assert overall["slices"] == len(ldct)
