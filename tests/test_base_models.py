"""Base models (`ctdenoise train-base`, `denoise --model base`, `run --warm-start base`): the
recipe runs the real pipeline to a pushed, deterministic model shipped with its provenance,
lineage and model card; the shipped base model denoises with no run root; what cannot be
done is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tensorflow as tf

from ctdenoise.app.base_models import (
    BASE_DIR,
    LEFT_OUT,
    PAIRED_BASE,
    PRETRAINING,
    PROVENANCE_FILE,
    SOURCES,
    BaseModelError,
    base_model,
    matching_overrides,
    starting_point,
)
from ctdenoise.trainer_module.hparams import PRESETS
from ctdenoise.trainer_module.models import build, configure
from ctdenoise.trainer_module.warm_start import warm_start
from tests.conftest import PERMISSIVE_GATE
from tests.dicom_factory import body_hu, write_slice
from tests.pipeline_helpers import ctdenoise


def _real_ct_root(root: Path, names: list[str]) -> Path:
    """A folder laid out as ../shared/realct: one small full-dose series per patient name."""
    for number, name in enumerate(names):
        for index in range(3):
            write_slice(root, name, "CT", index + 1, 3.0 * index, hu=body_hu(64, seed=10 * number + index))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """`train-base` twice with the tiny preset, into two output folders from two run roots."""
    realct = _real_ct_root(tmp_path_factory.mktemp("realct"), list(SOURCES))
    runs = {}
    for name in ("first", "again"):
        out, root = tmp_path_factory.mktemp(f"base_{name}"), tmp_path_factory.mktemp(f"root_{name}")
        args = ["--realct", str(realct), "--out", str(out), "--root", str(root), "--preset", "tiny"]
        result = ctdenoise("train-base", *args, "--size", "64", "--slices", "3", *PERMISSIVE_GATE)
        runs[name] = {"result": result, "folder": out / PAIRED_BASE, "root": root}
    return runs


@pytest.mark.slow
def test_train_base_ships_a_pushed_model_with_its_provenance(trained):
    run = trained["first"]
    assert run["result"].returncode == 0, run["result"].stderr[-3000:]
    folder = run["folder"]
    assert (folder / "saved_model.pb").is_file() and (folder / "model_card.html").stat().st_size > 1000
    made = json.loads((folder / PROVENANCE_FILE).read_text())
    assert made["command"][:2] == ["ctdenoise", "train-base"] and "--preset" in made["command"]
    assert made["commit"] and made["cpu"]["model"] and made["wall_seconds"] > 0
    assert made["sources"] == SOURCES and set(made["left_out"]) == set(LEFT_OUT)
    assert made["hparams"]["model"] == PAIRED_BASE and made["hparams"]["deterministic"] is True
    assert made["evaluation"]["overall"]["candidate"]["body_rmse_hu"] > 0
    lineage = json.loads((folder / "lineage.json").read_text())
    assert lineage["type"] == "PushedModel" and lineage["produced_by"]["component"] == "Pusher"
    assert f"train-base: {PAIRED_BASE} base model in {folder}" in run["result"].stdout
    card = (folder / "model_card.html").read_text()
    assert all(name in card for name in SOURCES) and "BSD-2-Clause" in card and "INV-0051" not in card


@pytest.mark.slow
def test_the_recipe_reproduces_its_weights(trained):
    """deterministic=true through the whole pipeline: the same command makes the same weights."""
    first, again = (trained[name] for name in ("first", "again"))
    assert again["result"].returncode == 0, again["result"].stderr[-3000:]
    prefixes = [str(run["folder"] / "variables" / "variables") for run in (first, again)]
    weights = [
        {
            name: tf.train.load_variable(p, name)
            for name, _ in tf.train.list_variables(p)
            if name.startswith("generator/")
        }
        for p in prefixes
    ]
    assert weights[0].keys() == weights[1].keys() and len(weights[0]) > 4
    for name, value in weights[0].items():
        np.testing.assert_allclose(weights[1][name], value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_train_base_refuses_a_real_ct_root_without_every_source(tmp_path):
    realct = _real_ct_root(tmp_path / "realct", list(SOURCES)[:2])
    result = ctdenoise("train-base", "--realct", str(realct), "--out", str(tmp_path / "out"), "--root", str(tmp_path))
    assert result.returncode != 0 and not (tmp_path / "out").exists()
    assert (
        result.stderr.strip().splitlines()[-1].startswith("ctdenoise: error:")
        and "GE-HEAD, TS-ABDOMEN" in result.stderr
    )


def test_the_shipped_base_model_denoises_with_no_run_root(simulated_data, tmp_path):
    assert (BASE_DIR / PAIRED_BASE / "saved_model.pb").is_file(), "no shipped base model: run `make base-models`"
    out = tmp_path / "out"
    series = str(simulated_data / "SIM001" / "LDCT")
    result = ctdenoise(
        "denoise", "--model", "base", "--root", str(tmp_path / "none"), "--input", series, "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert pydicom.dcmread(sorted(out.glob("*.dcm"))[0]).DerivationDescription.startswith(f"ctdenoise {PAIRED_BASE} ")
    fallback = ctdenoise(
        "denoise",
        "--model",
        "latest",
        "--root",
        str(tmp_path / "none"),
        "--input",
        series,
        "--out",
        str(tmp_path / "b"),
    )
    assert fallback.returncode == 0, fallback.stderr[-2000:]
    assert "no pushed model under" in fallback.stdout and "denoising with the base model instead" in fallback.stdout


@pytest.mark.parametrize("model", ["cycle_identity", "cyclegan"])
def test_the_shipped_cycle_base_starts_both_generators_of_a_cpu_preset_run(model):
    """`--warm-start base` for an unpaired model: the shipped cycle-identity base matches the CPU
    presets with its output (no tanh) and seeds G and F; its recipe asked for that output."""
    hp = configure("cpu-demo", [f"model={model}", "tanh_output=false"])
    folder = starting_point(hp)
    made = json.loads((folder / PROVENANCE_FILE).read_text())
    assert made["hparams"]["tanh_output"] is False and made["hparams"]["adversarial_weight"] == 0
    fresh = build(hp)
    assert warm_start(fresh.generator, str(folder), model, fresh.reverse_generator)[1] == [
        "generator",
        "reverse_generator",
    ]


def test_the_pretraining_recipes_configure_at_every_preset():
    for model, overrides in PRETRAINING.items():
        for name in PRESETS:
            assert configure(name, [f"model={model}", *overrides]).model == model


def test_matching_overrides_give_any_preset_the_base_s_architecture():
    """How the demo fine-tunes the base at `tiny` too: the `--set` items that make the run's
    architecture the base's, after which `--warm-start base` is accepted."""
    tiny = configure("tiny", [f"model={PAIRED_BASE}"])
    overrides = matching_overrides(tiny)
    assert overrides == ["red_channels=64", "red_kernel=5"]
    with pytest.raises(BaseModelError):
        starting_point(tiny)
    sized = configure("tiny", [f"model={PAIRED_BASE}", *overrides])
    assert starting_point(sized) == base_model(PAIRED_BASE) and matching_overrides(sized) == []
    assert sized.steps_per_epoch == tiny.steps_per_epoch  # the preset still sets the schedule
    cycle = configure("cpu-demo", ["model=cycle_identity"])
    assert matching_overrides(cycle) == ["tanh_output=false"]


def test_warm_start_base_needs_a_base_model_of_the_run_s_architecture(simulated_data, tmp_path):
    with pytest.raises(
        BaseModelError, match=f"no base model ships for wgan_vgg \\(shipped: cycle_identity, {PAIRED_BASE}\\)"
    ):
        base_model("wgan_vgg")
    assert base_model("cyclegan") == base_model("cycle_identity")  # the same generators
    result = ctdenoise(
        "run", "--data", str(simulated_data), "--root", str(tmp_path), "--warm-start", "base", *PERMISSIVE_GATE
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "the base cycle_identity has tanh_output=False" in last and "--set tanh_output=false" in last
    assert not (tmp_path / "metadata.sqlite").exists()
    sized = ctdenoise(
        "run",
        "--data",
        str(simulated_data),
        "--root",
        str(tmp_path),
        "--warm-start",
        "base",
        "--preset",
        "tiny",
        "--set",
        f"model={PAIRED_BASE}",
    )
    assert sized.returncode != 0 and not (tmp_path / "metadata.sqlite").exists()
    assert f"the base {PAIRED_BASE} has red_channels=64" in sized.stderr and "this run red_channels=4" in sized.stderr
