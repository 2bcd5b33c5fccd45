"""Training: one step updates everything, losses fall, runs resume exactly, divergence is
caught, TensorBoard gets the terms; plus the hyperparameter presets and overrides.

Tracing the train step dominates the cost (~20 s per CycleGAN on 2 cores), so one
module-scoped run feeds most tests.
"""

import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ctdenoise.contract.hu import unit_from_hu
from ctdenoise.trainer_module import hparams
from ctdenoise.trainer_module.data import at_level
from ctdenoise.trainer_module.export import reestimate_batch_norm
from ctdenoise.trainer_module.hparams import HParams
from ctdenoise.trainer_module.loop import NonFiniteLossError, fit
from ctdenoise.trainer_module.models import MODELS, configure, from_dict, preset, with_overrides
from ctdenoise.trainer_module.models.cycle_identity.model import CycleIdentityGAN
from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams
from ctdenoise.trainer_module.models.red_cnn.params import RedCNNParams
from ctdenoise.trainer_module.schedule import LinearDecay
from ctdenoise.trainer_module.strategy import make_strategy
from tests.limits import HANG_S

STEPS = 30
LEVEL_HU = 20.0
"""The noise level every synthetic patch is given."""
HP = with_overrides(
    preset("tiny", CycleIdentityParams),
    [
        f"steps_per_epoch={STEPS}",
        "checkpoint_every=10",
        "summary_every=1",
        "log_every=10",
    ],
)


def synthetic_ct(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth 'NDCT' images in [-1, 1] and 'LDCT' = NDCT + noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(-0.9, 0.3, [count, size // 8, size // 8, 1]).astype(np.float32)
    ndct = tf.image.resize(coarse, [size, size], method="bilinear").numpy()
    ldct = np.clip(ndct + rng.normal(0.0, 0.1, ndct.shape), -1.0, 1.0).astype(np.float32)
    return ldct, ndct


def datasets(hp: HParams, ldct: np.ndarray, ndct: np.ndarray) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    def batches(images: np.ndarray) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(at_level(images, LEVEL_HU)).batch(hp.batch, drop_remainder=True)

    return batches(ldct), batches(ndct)


def weights(gan: CycleIdentityGAN) -> dict[str, list[np.ndarray]]:
    return {
        name: [v.numpy() for v in model.trainable_variables]
        for name, model in (("G", gan.G), ("F", gan.F), ("D_A", gan.D_A), ("D_B", gan.D_B))
    }


def optimizer_state(gan: CycleIdentityGAN) -> list[np.ndarray]:
    return [
        v.numpy()
        for optimizer in (gan.generator_optimizer, gan.D_A_optimizer, gan.D_B_optimizer)
        for v in optimizer.variables
    ]


def scalar_events(log_dir: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} for every scalar written; images map to an empty dict."""
    events: dict[str, dict[int, float]] = {}
    for path in log_dir.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                array = tf.make_ndarray(value.tensor)
                series = events.setdefault(value.tag, {})
                if array.ndim == 0:
                    series[event.step] = float(array)
    return events


@dataclass
class Run:
    gan: CycleIdentityGAN
    before: dict
    after_one_step: dict
    step_after_one: int
    result: dict
    checkpoint_dir: Path
    events: dict
    progress: list


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    """One explicit train step, then fit() to STEPS with checkpoints and summaries."""
    root = tmp_path_factory.mktemp("run")
    ldct, ndct = synthetic_ct(16, HP.patch, seed=0)
    dataset_a, dataset_b = datasets(HP, ldct, ndct)
    gan = CycleIdentityGAN(HP)
    before = weights(gan)
    a, b = next(iter(tf.data.Dataset.zip((dataset_a, dataset_b))))
    gan.train_step(a, b)
    after_one_step, step_after_one = weights(gan), gan.completed_steps
    eval_ldct, eval_ndct = synthetic_ct(2, 64, seed=1)
    messages: list[str] = []
    result = fit(
        gan,
        tf.data.Dataset.zip((dataset_a, dataset_b)),
        root / "checkpoints",
        root / "logs",
        eval_pairs=(at_level(eval_ldct, LEVEL_HU).numpy(), eval_ndct),
        progress=messages.append,
    )
    return Run(
        gan,
        before,
        after_one_step,
        step_after_one,
        result,
        root / "checkpoints",
        scalar_events(root / "logs"),
        messages,
    )


def test_one_step_updates_all_four_models_and_counts(run):
    assert run.step_after_one == 1
    for name, initial in run.before.items():
        changed = [not np.array_equal(x, y) for x, y in zip(initial, run.after_one_step[name], strict=True)]
        assert all(changed), f"{name}: {changed.count(False)} variables did not move"


def test_fit_trains_to_the_total_and_reports(run):
    assert run.result["steps"] == STEPS == run.gan.completed_steps
    judged = {f"{d}/{what}" for d in ("d_a", "d_b") for what in ("real", "fake", "accuracy")}
    assert (
        set(run.result["losses"])
        == {"g_adv_ab", "g_adv_ba", "cycle", "identity", "g_total", "d_a", "d_b", "lr"} | judged
    )
    assert all(0.0 <= run.result["losses"][f"{d}/accuracy"] <= 1.0 for d in ("d_a", "d_b"))
    assert run.result["losses"]["lr"] == pytest.approx(HP.lr)
    assert run.result["checkpoint"].endswith(f"ckpt-{STEPS}")
    assert set(run.result["psnr"]) == {"ldct_vs_ndct", "denoised_vs_ndct"}
    curve = run.result["validation"]
    assert [point["step"] for point in curve] == list(range(2, STEPS + 1))  # summary_every=1; step 1 ran before
    assert all(b["seconds"] >= a["seconds"] for a, b in itertools.pairwise(curve))
    assert curve[-1]["body_rmse_hu"] == pytest.approx(run.events["body_rmse_hu/denoised_vs_ndct"][STEPS], rel=1e-5)
    assert any("steps/s" in line and "ETA" in line for line in run.progress)


def test_cycle_and_identity_losses_fall(run):
    cycle, identity = run.events["loss/cycle"], run.events["loss/identity"]
    steps = sorted(cycle)
    assert steps == list(range(2, STEPS + 1))  # step 1 ran outside fit()
    first, last = steps[:5], steps[-5:]
    assert np.mean([cycle[s] + identity[s] for s in last]) < np.mean([cycle[s] + identity[s] for s in first])


def test_tensorboard_has_every_term_psnr_and_images(run):
    tags = set(run.events)
    for word in ("cycle", "identity", "g_adv_ab", "g_adv_ba", "g_total", "d_a", "d_b"):
        assert f"loss/{word}" in tags
    assert {"lr", "psnr/ldct_vs_ndct", "psnr/denoised_vs_ndct", "images/ldct_denoised_ndct"} <= tags
    assert {"body_rmse_hu/ldct_vs_ndct", "body_rmse_hu/denoised_vs_ndct"} <= tags
    assert {"d_a/accuracy", "d_b/accuracy", "d_a/real", "d_b/fake"} <= tags  # is the adversarial game on?


def test_a_joint_batch_normalises_real_and_fake_patches_together():
    """Called on each batch alone (the paper) a discriminator's BatchNorm erases what is
    constant over a batch; in one joint batch the fakes' statistics shape the real logits."""
    real = tf.random.stateless_uniform([HP.batch, HP.patch, HP.patch, 1], [1, 2], -1.0, 1.0)
    fakes = [tf.random.stateless_normal(real.shape, [3, i], stddev=0.05) + real for i in range(2)]
    for joint, differ in ((False, False), (True, True)):
        gan = CycleIdentityGAN(with_overrides(HP, [f"d_joint_batch={joint}"]))
        logits = [gan._judge(gan.D_A, real, fake)[0].numpy() for fake in fakes]
        assert (not np.allclose(*logits)) is differ


def test_the_windowed_discriminator_judges_soft_tissue_only():
    """With d_window a discriminator sees the soft-tissue window (-160 to 240 HU): fakes that
    differ only in air and lungs get the same logits, and no adversarial gradient reaches
    those pixels; a difference in soft tissue shows. Without it every difference shows."""
    air = np.full([HP.batch, HP.patch, HP.patch, 1], -1000.0, np.float32)
    air[:, :, HP.patch // 2 :] = 40.0  # half the patch soft tissue
    lungs, noisier = air.copy(), air.copy()
    lungs[:, :, : HP.patch // 2] = -850.0
    noisier[:, :, HP.patch // 2 :] += np.random.default_rng(0).normal(0, 30, noisier[:, :, HP.patch // 2 :].shape)
    real, fakes = unit_from_hu(air), [tf.constant(unit_from_hu(x)) for x in (air, lungs, noisier)]
    for window, lungs_show in ((False, True), (True, False)):
        gan = CycleIdentityGAN(with_overrides(HP, [f"d_window={window}", "d_joint_batch=true"]))
        same, lung, noisy = [gan._judge(gan.D_B, real, fake)[1].numpy() for fake in fakes]
        assert (not np.allclose(same, lung)) is lungs_show and not np.allclose(same, noisy)
        with tf.GradientTape() as tape:
            tape.watch(fakes[1])
            judged = gan._judge_fake(gan.D_B, real, fakes[1])
        in_lungs = tape.gradient(judged, fakes[1]).numpy()[:, :, : HP.patch // 2]
        assert bool(np.any(in_lungs != 0)) is lungs_show


def test_the_supervised_term_needs_pairs_and_joins_the_generators_loss():
    with pytest.raises(ValueError, match="supervised_lambda needs paired patches"):
        with_overrides(HP, ["supervised_lambda=10"])
    supervised_only = with_overrides(
        HP, ["paired=true", "supervised_lambda=10", "adversarial_weight=0", "cycle_lambda=0", "identity_gamma=0"]
    )
    gan = CycleIdentityGAN(supervised_only)
    ldct, ndct = synthetic_ct(HP.batch, HP.patch, seed=4)
    ldct, ndct = (at_level(x, LEVEL_HU).numpy() for x in (ldct, ndct))
    expected = 10 * float(tf.reduce_mean(tf.abs(gan.G(ldct, training=True) - ndct[..., :1])))
    losses = gan.train_step(tf.constant(ldct), tf.constant(ndct))
    assert float(losses["supervised"]) == pytest.approx(expected, rel=1e-4)
    assert float(losses["g_total"]) == pytest.approx(float(losses["supervised"]))
    assert float(losses["g_adv_ab"]) == float(losses["cycle"]) == float(losses["identity"]) == 0.0


def test_resume_restores_step_and_optimizer_slots_then_continues(run, tmp_path):
    checkpoint_dir = tmp_path / "checkpoints"
    shutil.copytree(run.checkpoint_dir, checkpoint_dir)
    longer = with_overrides(HP, [f"steps_per_epoch={STEPS + 3}"])
    resumed = CycleIdentityGAN(longer)
    latest = tf.train.latest_checkpoint(str(checkpoint_dir))
    resumed.checkpoint().restore(latest).assert_consumed()
    assert resumed.completed_steps == STEPS
    for restored, trained in zip(optimizer_state(resumed), optimizer_state(run.gan), strict=True):
        np.testing.assert_array_equal(restored, trained)
    assert any(np.any(state != 0) for state in optimizer_state(resumed)[1:])  # slots, not just zeros

    messages: list[str] = []
    ldct, ndct = synthetic_ct(8, HP.patch, seed=2)
    result = fit(
        resumed,
        tf.data.Dataset.zip(datasets(longer, ldct, ndct)),
        checkpoint_dir,
        tmp_path / "logs",
        progress=messages.append,
    )
    assert f"at step {STEPS}" in messages[0]
    assert result["steps"] == STEPS + 3
    assert result["checkpoint"].endswith(f"ckpt-{STEPS + 3}")


def test_non_finite_loss_stops_before_anything_is_saved(tmp_path):
    nan = np.full([HP.batch, HP.patch, HP.patch, 1], np.nan, np.float32)
    ldct, ndct = synthetic_ct(HP.batch, HP.patch, seed=3)
    dataset_a, dataset_b = datasets(HP, nan, ndct)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss '\w+' at step 1\b"):
        fit(
            CycleIdentityGAN(HP),
            tf.data.Dataset.zip((dataset_a, dataset_b)),
            tmp_path / "checkpoints",
            tmp_path / "logs",
            progress=lambda _: None,
        )
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) is None


def test_mixed_precision_keeps_outputs_float32_and_scales_losses():
    gan = CycleIdentityGAN(with_overrides(preset("tiny", CycleIdentityParams), ["mixed_precision=on"]))
    assert gan.G.layers[2].compute_dtype == "float16"
    assert gan.G.output.dtype == tf.float32 and gan.D_A.output.dtype == tf.float32
    assert isinstance(gan.generator_optimizer, keras.mixed_precision.LossScaleOptimizer)
    assert keras.mixed_precision.global_policy().name == "float32"  # building left it as it was


def test_one_worker_and_at_most_one_gpu_get_the_default_strategy(monkeypatch):
    if len(tf.config.list_physical_devices("GPU")) > 1:
        pytest.skip("several GPUs: MirroredStrategy is the right answer here")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 0}}')
    assert make_strategy() is tf.distribute.get_strategy()


def test_batch_norm_reestimation_is_the_plain_average_of_batch_statistics():
    inputs = keras.Input([2, 2, 1])
    norm = keras.layers.BatchNormalization(momentum=0.1)
    model = keras.Model(inputs, norm(inputs))
    batches = [
        tf.fill([3, 2, 2, 1], value) + tf.constant([[[[-1.0]]], [[[0.0]]], [[[1.0]]]]) for value in (1.0, 2.0, 6.0)
    ]
    for batch in batches:  # ordinary training: momentum 0.1 keeps mostly the last batch
        model(batch, training=True)
    assert float(norm.moving_mean[0]) == pytest.approx(0.1 * 0.1 * 1.0 * 0.9 + 0.1 * 0.9 * 2.0 + 0.9 * 6.0, rel=1e-5)
    reestimate_batch_norm(model, iter(batches), 3)
    assert float(norm.moving_mean[0]) == pytest.approx(3.0, rel=1e-5)  # (1 + 2 + 6) / 3
    # each batch holds m-1, m, m+1 four times: variance 2/3, which Keras stores unbiased (12 / 11)
    assert float(norm.moving_variance[0]) == pytest.approx(2 / 3 * 12 / 11, rel=1e-5)
    assert norm.momentum == 0.1


def test_learning_rate_constant_or_linear_decay_to_zero():
    assert float(LinearDecay(2e-4, 100)(99)) == pytest.approx(2e-4)
    decay = LinearDecay(2e-4, 100, decay_start=60)
    assert [float(decay(step)) for step in (0, 60, 80, 100, 120)] == pytest.approx([2e-4, 2e-4, 1e-4, 0.0, 0.0])


# Hyperparameters.


def test_paper_preset_is_the_spec_configuration():
    hp = preset("paper", CycleIdentityParams)
    assert (hp.ngf, hp.nglf, hp.ndf, hp.patch, hp.batch) == (128, 15, 64, 56, 10)
    assert (hp.cycle_lambda, hp.identity_gamma, hp.pool_size, hp.use_pool) == (10, 5, 50, True)
    assert (hp.lr, hp.beta1, hp.beta2, hp.decay_start_epoch) == (2e-4, 0.5, 0.999, None)
    assert set(hparams.PRESETS) == {"paper", "cpu-demo", "cpu-30min", "tiny"}


def test_the_30_minute_preset_is_cpu_demo_trained_longer():
    demo, long = preset("cpu-demo", CycleIdentityParams), preset("cpu-30min", CycleIdentityParams)
    assert (long.ngf, long.nglf, long.ndf, long.patch, long.batch) == (
        demo.ngf,
        demo.nglf,
        demo.ndf,
        demo.patch,
        demo.batch,
    )
    assert long.total_steps == 3800 and long.decay_start_step == 1800
    switches = ("d_joint_batch", "d_window", "foreground_patches", "foreground_hu", "paired", "d_lr_scale")
    assert [getattr(long, name) for name in switches] == [getattr(demo, name) for name in switches]
    assert (
        not long.paired and preset("paper", CycleIdentityParams).foreground_patches == 0
    )  # unpaired; the paper draws anywhere


def test_overrides_parse_by_field_type():
    hp = with_overrides(
        preset("paper", CycleIdentityParams), ["ngf=32", "lr=1e-3", "use_pool=false", "decay_start_epoch=100"]
    )
    assert (hp.ngf, hp.lr, hp.use_pool, hp.decay_start_epoch) == (32, 1e-3, False, 100)
    assert hp.decay_start_step == 100 * hp.steps_per_epoch
    assert with_overrides(hp, ["decay_start_epoch=none"]).decay_start_epoch is None


@pytest.mark.parametrize(
    "override, message",
    [
        ("nfg=3", "unknown hyperparameter 'nfg'; known: model, patch, batch"),
        ("ngf=many", "bad value for hyperparameter 'ngf'"),
        ("use_pool=maybe", "bad value for hyperparameter 'use_pool'"),
        ("mixed_precision=fp8", "mixed_precision must be one of"),
        ("foreground_hu=-1024", r"^foreground_hu must be a finite number in \(-1024, 2000\), got -1024.0$"),
        ("beta2=1", r"^beta2 must be a finite number in \[0, 1\), got 1.0$"),
        ("epochs=0", r"^epochs must be >= 1, got 0$"),
        ("ngf", "not of the form key=value"),
    ],
)
def test_bad_overrides_are_explained(override, message):
    with pytest.raises(ValueError, match=message):
        with_overrides(preset("tiny"), [override])


def test_dict_round_trip_is_json_serialisable():
    import json

    for name in hparams.PRESETS:
        for model in MODELS:
            hp = preset(name, model)
            assert from_dict(json.loads(json.dumps(hparams.to_dict(hp)))) == hp
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['bogus'\] for model 'cycle_identity'"):
        from_dict({"ngf": 4, "bogus": 1})
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['ngf'\] for model 'red_cnn'"):
        from_dict({"model": "red_cnn", "ngf": 4})


def test_a_model_override_chooses_the_model_and_its_sizes_in_the_preset():
    red = configure("cpu-demo", ["batch=6", "model=red_cnn"])
    assert isinstance(red, RedCNNParams) and (red.batch, red.red_channels, red.epochs) == (6, 64, 14)
    assert configure("paper", ["model=red_cnn"]) == preset("paper", "red_cnn") == preset("paper", RedCNNParams)
    with pytest.raises(ValueError, match="model=red_cnn changes the model of 'cycle_identity' hyperparameters"):
        with_overrides(preset("tiny"), ["model=red_cnn"])


DETERMINISM_RUN = """
import hashlib, sys
import numpy as np
import ctdenoise.tensorflow_env
from ctdenoise.trainer_module.models.cycle_identity.model import CycleIdentityGAN
from ctdenoise.trainer_module.models import preset, with_overrides
from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams
hp = with_overrides(preset("cpu-demo", CycleIdentityParams), ["deterministic=true", "seed=3"])
rng = np.random.default_rng(0)
gan = CycleIdentityGAN(hp)
for _ in range(6):
    a, b = (rng.uniform(-1, 1, [hp.batch, hp.patch, hp.patch, 2]).astype(np.float32) for _ in range(2))
    gan.train_step(a, b)
digest = hashlib.sha256()
optimizers = (gan.generator_optimizer, gan.D_A_optimizer, gan.D_B_optimizer)
for variable in [*gan.variables, *(v for o in optimizers for v in o.variables)]:
    digest.update(variable.numpy().tobytes())
print("STATE", digest.hexdigest())
"""


@pytest.mark.slow
def test_deterministic_runs_of_one_seed_give_bit_identical_state():
    """Two processes (fresh TensorFlow runtimes, as two `ctdenoise run`s) train cpu-demo's
    networks for 6 steps with deterministic=true; every variable, optimizer slot and pool
    image must match to the bit (docs/design.md, "The model family")."""
    import subprocess
    import sys

    def state() -> str:
        result = subprocess.run(
            [sys.executable, "-c", DETERMINISM_RUN],
            capture_output=True,
            text=True,
            timeout=HANG_S,
            cwd=Path(__file__).resolve().parents[1],
        )  # HANG_S bounds a hang
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.split("STATE")[-1].strip()

    assert state() == state()


def test_deterministic_turns_the_memory_optimizer_off_for_the_train_step_only():
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.eager import context

    from ctdenoise.trainer_module.determinism import without_memory_optimizer

    def memory_optimization() -> int:
        options = context.context().function_call_options
        return config_pb2.ConfigProto.FromString(
            options.config_proto_serialized
        ).graph_options.rewrite_options.memory_optimization

    assert without_memory_optimizer(memory_optimization)() == rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
    assert memory_optimization() == rewriter_config_pb2.RewriterConfig.DEFAULT_MEM_OPT


def test_body_rmse_counts_only_the_reference_body_in_hu():
    """Air outside the body is left out; inside, the error is read in HU, not in [-1, 1]."""
    from ctdenoise.contract.hu import normalize_hu
    from ctdenoise.trainer_module.summaries import body_rmse_hu

    reference = np.full((2, 8, 8, 1), -1000.0)
    reference[:, 2:6, 2:6] = 40.0
    image = reference + np.where(reference > -1000.0, 10.0, 300.0)  # 10 HU in the body, 300 HU in air
    assert body_rmse_hu(normalize_hu(image), normalize_hu(reference)) == pytest.approx(10.0, rel=1e-6)
