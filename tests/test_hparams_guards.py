"""Hyperparameters that training would only reject a minute in (NumPy's seed range, sizes
that cannot fit in memory) are refused in one line before any pipeline component runs."""

from __future__ import annotations

import pytest

from ctdenoise.trainer_module.hparams import MAX_SEED
from ctdenoise.trainer_module.models import check_memory, preset, with_overrides
from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams
from ctdenoise.trainer_module.models.cycle_identity.size import discriminator_weights, generator_weights
from tests.pipeline_helpers import ctdenoise


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1])
def test_a_seed_outside_numpys_range_is_refused(seed):
    with pytest.raises(ValueError, match=rf"^seed must be in \[0, {MAX_SEED}\] \(NumPy's seed range\), got {seed}$"):
        with_overrides(preset("tiny"), [f"seed={seed}"])
    assert with_overrides(preset("tiny"), [f"seed={MAX_SEED}"]).seed == MAX_SEED


@pytest.mark.parametrize("name", ["paper", "cpu-demo", "tiny"])
def test_the_weight_counts_are_those_of_the_built_networks(name):
    from ctdenoise.trainer_module.models.cycle_identity.networks import build_discriminator, build_generator

    hp = with_overrides(preset(name, CycleIdentityParams), ["patch=120"])
    assert generator_weights(hp) == build_generator(hp, "G").count_params()
    assert discriminator_weights(hp) == build_discriminator(hp, "D").count_params()


def test_a_configuration_larger_than_memory_is_refused_with_the_estimate():
    hp = with_overrides(preset("cpu-demo"), ["ngf=100000"])
    with pytest.raises(
        ValueError,
        match=r"^model cycle_identity: ngf=100000, nglf=8, ndf=16, pool_size=50, patch=56, "
        r"batch=4: training needs at least 67,336\.2 GiB of memory \(networks "
        r"with Adam state 67,055\.8 GiB, activations 280\.4 GiB\), more than "
        r"this machine's 8\.0 GiB$",
    ):
        check_memory(hp, memory=8 * 2**30)
    check_memory(preset("paper"), memory=2 * 2**30)  # the paper's configuration needs about 1.2 GiB at least


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["seed=-1"], "seed must be in [0, 4294967295] (NumPy's seed range), got -1"),
        (
            ["ngf=100000"],
            "model cycle_identity: ngf=100000, nglf=8, ndf=16, pool_size=50, patch=56, batch=4: training "
            "needs at least ",
        ),
        (
            ["model=red_cnn", "supervised_lambda=1"],
            "hyperparameter 'supervised_lambda' does not apply to model 'red_cnn' "
            "(it is read by cycle_identity, cyclegan)",
        ),
        (
            ["identity_gamma=2", "model=cyclegan"],
            "hyperparameter 'identity_gamma' does not apply to model 'cyclegan' (it is read by cycle_identity)",
        ),
        (["model=unet"], "unknown model 'unet'; known: cycle_identity, cyclegan, red_cnn, wgan_vgg"),
    ],
)
def test_run_refuses_them_in_one_line_before_anything_runs(tmp_path, overrides, message):
    result = ctdenoise(
        "run",
        "--data",
        str(tmp_path),
        "--root",
        str(tmp_path / "run"),
        "--preset",
        "cpu-demo",
        *[arg for item in overrides for arg in ("--set", item)],
    )
    assert result.returncode == 1 and not (tmp_path / "run").exists()
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ctdenoise: error: {message}")
