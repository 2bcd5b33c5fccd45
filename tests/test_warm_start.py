"""Warm start (`trainer_module.warm_start`, `pipeline.warm_start`): an exported generator seeds
a new model of the same architecture weight for weight (a CycleGAN's reverse generator too,
where the export carries one), another architecture is refused in one line, and a starting
model is kept once per content under the pipeline root."""

from pathlib import Path

import numpy as np
import pytest

from ctdenoise.pipeline.warm_start import saved_model_dir, stage
from ctdenoise.trainer_module.export import Description, export_generator
from ctdenoise.trainer_module.models import build, configure, preset
from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams
from ctdenoise.trainer_module.models.red_cnn.params import RedCNNParams
from ctdenoise.trainer_module.warm_start import WarmStartError, saved_model_name, warm_start


@pytest.fixture(scope="module")
def exported_red_cnn(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    """A tiny red_cnn exported as the Trainer exports it, and its generator's weights."""
    model = build(preset("tiny", RedCNNParams))
    folder = tmp_path_factory.mktemp("start") / "model"
    export_generator(model.generator, Description.of(model), str(folder), {"test": True})
    return folder, [v.numpy() for v in model.generator.variables]


def test_a_new_generator_starts_from_the_exported_weights(exported_red_cnn):
    folder, exported = exported_red_cnn
    fresh = build(preset("tiny", RedCNNParams))
    for variable in fresh.generator.variables:  # other weights than the exported ones
        variable.assign(variable + 1.0)
    assert warm_start(fresh.generator, str(folder), "red_cnn") == ("red_cnn", ["generator"])
    for want, variable in zip(exported, fresh.generator.variables, strict=True):
        np.testing.assert_array_equal(variable.numpy(), want)


def test_a_cycle_model_starts_both_generators_and_only_them(tmp_path):
    """The reverse generator F rides in the export; a plain CycleGAN (the same generators)
    starts G and F from a cycle-identity export, and its discriminators stay as built."""
    start = build(preset("tiny", CycleIdentityParams))
    export_generator(start.generator, Description.of(start), str(tmp_path / "cycle"), None, start.reverse_generator)
    fresh = build(configure("tiny", ["model=cyclegan", "seed=7"]))
    judges = [v.numpy() for v in fresh.D_A.variables]
    assert warm_start(fresh.generator, str(tmp_path / "cycle"), "cyclegan", fresh.reverse_generator) == (
        "cycle_identity",
        ["generator", "reverse_generator"],
    )
    for ours, theirs in ((fresh.G, start.G), (fresh.F, start.F)):
        for got, want in zip(ours.variables, theirs.variables, strict=True):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    for got, want in zip(fresh.D_A.variables, judges, strict=True):
        np.testing.assert_array_equal(got.numpy(), want)
    export_generator(start.generator, Description.of(start), str(tmp_path / "g_only"), None)
    other = build(configure("tiny", ["model=cyclegan", "seed=7"]))
    before = [v.numpy() for v in other.F.variables]
    assert warm_start(other.generator, str(tmp_path / "g_only"), "cyclegan", other.reverse_generator)[1] == [
        "generator"
    ]
    for got, want in zip(other.F.variables, before, strict=True):  # F starts as it would from scratch
        np.testing.assert_array_equal(got.numpy(), want)


def test_another_architecture_is_refused_in_one_line(exported_red_cnn):
    folder, _ = exported_red_cnn
    cycle = build(preset("tiny", CycleIdentityParams))
    before = [v.numpy() for v in cycle.generator.variables]
    with pytest.raises(WarmStartError) as refused:
        warm_start(cycle.generator, str(folder), "cycle_identity")
    message = str(refused.value)
    assert "\n" not in message and "cycle_identity" in message and "red_cnn" in message and "architecture" in message
    for want, variable in zip(before, cycle.generator.variables, strict=True):  # nothing half-loaded
        np.testing.assert_array_equal(variable.numpy(), want)


def test_a_folder_without_a_saved_model_is_refused(tmp_path):
    with pytest.raises(WarmStartError, match="no SavedModel variables"):
        warm_start(build(preset("tiny", RedCNNParams)).generator, str(tmp_path), "red_cnn")
    with pytest.raises(ValueError, match="no SavedModel there"):
        saved_model_dir(str(tmp_path))


def test_a_starting_model_is_copied_once_per_content(exported_red_cnn, tmp_path):
    folder, _ = exported_red_cnn
    trainer_layout = tmp_path / "trainer_model"
    (trainer_layout / "Format-Serving").parent.mkdir()
    (trainer_layout / "Format-Serving").symlink_to(folder, target_is_directory=True)
    pipeline_root = str(tmp_path / "pipeline")
    staged = stage(str(folder), pipeline_root)
    assert stage(str(trainer_layout), pipeline_root) == staged  # same content, same artifact
    assert Path(staged).parent == tmp_path / "pipeline" / "WarmStart"
    copy = Path(staged, "Format-Serving")
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == sorted(
        p.relative_to(folder) for p in folder.rglob("*")
    )
    assert saved_model_name(str(copy)) == "red_cnn"
