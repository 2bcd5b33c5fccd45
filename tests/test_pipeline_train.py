"""End to end through the Trainer (the session's `run --until push`): the Trainer behind the
HU gate, a SavedModel that maps HU to HU, TensorBoard scalars and images, hyperparameters in
ML Metadata, and resume after the process is killed mid-training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from ctdenoise.contract.hu import HU_MAX, HU_MIN
from ctdenoise.metadata.queries import latest_run_executions, open_store, output_artifacts
from tests.limits import HANG_S
from tests.pipeline_helpers import ctdenoise

TINY = ["--preset", "tiny"]


def test_summary_reports_training(pushed_run):
    _, summary, stdout = pushed_run
    train = summary["train"]
    assert train["steps"] == 10 and train["seconds"] > 0
    assert set(train["final_losses"]) >= {"g_adv_ab", "g_adv_ba", "cycle", "identity", "g_total", "d_a", "d_b"}
    assert all(np.isfinite(v) for v in train["final_losses"].values())
    assert "[train] step 10/10" in stdout and "steps/s" in stdout and "ETA" in stdout


def test_a_run_leaves_no_build_of_tfx_in_the_temporary_folder(pushed_run):
    """TFX builds a 42 MB sdist of itself per Beam step for remote Beam workers and never
    deletes it; the DirectRunner does not need it, so local runs leave nothing behind."""
    run_root, _, _ = pushed_run
    temp = run_root.parent / f"{run_root.name}_tmpdir"
    assert not [p for p in temp.rglob("*") if p.name == "tfx" and p.parent.name == "build"]


def test_saved_model_maps_a_512_slice_of_hu_to_hu(pushed_run):
    _, summary, _ = pushed_run
    model = tf.saved_model.load(os.path.join(summary["train"]["model_uri"], "Format-Serving"))
    hu = np.full((1, 512, 512, 1), -1000.0, np.float32)
    hu[0, 128:384, 128:384] = 40.0
    out = model.signatures["serving_default"](hu=tf.constant(hu), noise_hu=tf.constant([20.0]))["denoised_hu"].numpy()
    assert out.shape == hu.shape and out.dtype == np.float32
    assert out.min() >= HU_MIN and out.max() <= HU_MAX  # HU inside the training window, not [-1, 1]
    assert out.max() - out.min() > 100.0


def test_tensorboard_has_losses_psnr_and_images(pushed_run):
    _, summary, _ = pushed_run
    tags = set()
    kinds = set()
    for path in tf.io.gfile.glob(os.path.join(summary["train"]["tensorboard_dir"], "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.add(value.tag)
                kinds.add(value.metadata.plugin_data.plugin_name)
    for word in ("cycle", "identity", "psnr", "exported_vs_ndct", "d_a", "d_b", "g_adv_ab", "lr"):
        assert any(word in t for t in tags), (word, tags)
    assert "images" in kinds


def test_model_artifact_records_hyperparameters(pushed_run):
    run_root, _, _ = pushed_run
    store = open_store(run_root)
    trainer = latest_run_executions(store)["Trainer"]
    [model] = output_artifacts(store, trainer)["model"]
    recorded = model.custom_properties
    assert recorded["train_steps"].int_value == 10
    hparams = recorded["hparams"].struct_value.fields
    assert hparams["ngf"].number_value == 4 and hparams["cycle_lambda"].number_value == 10


def test_killed_trainer_resumes_from_its_checkpoint(simulated_data, tmp_path):
    args = [
        "run",
        "--data",
        str(simulated_data),
        "--root",
        str(tmp_path),
        "--until",
        "train",
        *TINY,
        "--set",
        "epochs=3",
        "--set",
        "checkpoint_every=5",
        "--set",
        "log_every=5",
    ]
    # The run kills itself as it reports step 10, just after saving that step's checkpoint
    # (tests/at_line.py); killed on the test's reading that line, it would have trained on
    # for as long as the reading took.
    first = subprocess.run(
        [sys.executable, "-m", "tests.at_line", "[train] step 10/30", *args],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )  # bounds a hang
    assert first.returncode == -signal.SIGKILL, first.stdout[-2000:] + first.stderr[-3000:]
    second = ctdenoise(*args, "--summary", str(tmp_path / "s.json"))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from interrupted run" in second.stdout
    assert "at step 10" in second.stdout and "[train] step 5/30" not in second.stdout
    assert json.loads((tmp_path / "s.json").read_text())["train"]["steps"] == 30
    # the killed Trainer is marked, its half-written model folder gone, its checkpoints kept for the resume
    store = open_store(tmp_path)
    [killed] = [e for e in store.get_executions() if "abandoned" in e.custom_properties]
    assert killed.last_known_state == metadata_store_pb2.Execution.CANCELED
    assert f"[run] Trainer: execution {killed.id} was left unfinished by a killed run; marked canceled" in second.stdout
    assert not (tmp_path / "pipeline" / "Trainer" / "model" / str(killed.id)).exists()
    assert (tmp_path / "pipeline" / "Trainer" / "model_run" / str(killed.id) / "checkpoints").is_dir()
