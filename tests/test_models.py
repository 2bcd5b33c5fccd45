"""The networks match their papers' configurations exactly (docs/design.md, "The algorithm: cycle-identity CycleGAN
for low-dose CT", design, "The model family")."""

import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from ctdenoise.trainer_module.data import at_level
from ctdenoise.trainer_module.models import preset
from ctdenoise.trainer_module.models.cycle_identity.networks import build_discriminator, build_generator
from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams
from ctdenoise.trainer_module.models.layers import LeakyReLU
from tests.limits import HANG_S


def trainable_parameters(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.fixture(scope="module")
def paper_models():
    hp = preset("paper", CycleIdentityParams)
    return build_generator(hp, "G"), build_discriminator(hp, "D")


def test_paper_parameter_counts_match_the_original(paper_models):
    """The original's counts, plus the first convolution's 3 × 3 × ngf kernels that read the level map."""
    generator, discriminator = paper_models
    level_kernels = 3 * 3 * preset("paper", CycleIdentityParams).ngf
    assert trainable_parameters(generator) == 3_712_693 + level_kernels
    assert trainable_parameters(discriminator) == 2_765_131
    assert (
        2 * trainable_parameters(generator) + 2 * trainable_parameters(discriminator) == 12_955_648 + 2 * level_kernels
    )


def test_discriminator_gives_25_logits_for_a_56_pixel_patch(paper_models):
    _, discriminator = paper_models
    assert discriminator(tf.zeros([3, 56, 56, 1])).shape == (3, 25)


def test_batch_norm_uses_the_original_momentum_and_epsilon(paper_models):
    norms = [
        layer for model in paper_models for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert norms
    assert {(layer.momentum, layer.epsilon) for layer in norms} == {(0.1, 1e-5)}


def test_generator_keeps_any_slice_size_and_stays_in_range():
    generator = build_generator(preset("tiny", CycleIdentityParams), "G")
    image = tf.random.uniform([2, 64, 48, 1], -1.0, 1.0, seed=1)
    output = generator(at_level(image, 20.0), training=False)
    assert output.shape == (2, 64, 48, 1)
    assert output.dtype == tf.float32
    assert np.all(np.abs(output.numpy()) < 1.0)


def test_without_tanh_air_passes_through_and_the_export_clips_to_the_window():
    """tanh(-1 + small correction) is about -0.76 (-640 HU): an untrained generator turns air
    grey with tanh and keeps it without; either way the SavedModel's HU stay in the window."""
    from ctdenoise.trainer_module.export import Denoiser, Description
    from ctdenoise.trainer_module.models import with_overrides

    air = at_level(tf.fill([1, 32, 32, 1], -1.0), 20.0)
    for tanh_output, expected in ((True, np.tanh(-1.0)), (False, -1.0)):
        generator = build_generator(
            with_overrides(preset("tiny", CycleIdentityParams), [f"tanh_output={tanh_output}"]), "G"
        )
        assert abs(float(tf.reduce_mean(generator(air, training=False))) - expected) < 0.05
    final_conv = [layer for layer in generator.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    final_conv.bias.assign([-0.5])  # a correction that pushes air below the window
    denoiser = Denoiser(generator, Description("cycle_identity", 22))
    hu = denoiser.denoise_hu(tf.fill([1, 32, 32, 1], -1024.0), tf.constant([20.0]))["denoised_hu"].numpy()
    assert hu.min() >= -1024.0 and hu.min() < -1014.0


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_leaky_relu_has_the_keras_values_and_gradients_bit_for_bit(dtype):
    values = np.concatenate(
        [[-np.inf, -3.0, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 2.0, np.inf], np.random.default_rng(0).normal(size=1000)]
    )
    x = tf.constant(values, dtype)
    upstream = tf.constant(np.random.default_rng(1).normal(size=values.shape), dtype)
    results = []
    for layer in (keras.layers.LeakyReLU(0.2, dtype=dtype), LeakyReLU(0.2, dtype=dtype)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        results.append((y.numpy(), tape.gradient(y, x, output_gradients=upstream).numpy()))
    (keras_y, keras_grad), (y, grad) = results
    assert y.dtype == keras_y.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(y, keras_y)
    np.testing.assert_array_equal(grad, keras_grad)


def test_discriminator_gradient_leaves_the_grappler_remapper_nothing_to_reject():
    """With the stock LeakyReLU, oneDNN CPU builds log "remapper failed: ... Mutation::Apply
    error: fanout '.../LeakyReluGrad' exist for missing node '.../BiasAdd'" here. TensorFlow's
    C++ errors are shown only in a process started with them on, hence the subprocess."""
    code = textwrap.dedent("""
        import ctdenoise.tensorflow_env, tensorflow as tf
        from ctdenoise.trainer_module.models import preset
        from ctdenoise.trainer_module.models.cycle_identity.networks import build_discriminator
        hp = preset("tiny")
        discriminator = build_discriminator(hp, "D")

        @tf.function
        def gradients(patch):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(discriminator(patch, training=True)))
            return tape.gradient(loss, discriminator.trainable_variables)

        gradients(tf.zeros([hp.batch, hp.patch, hp.patch, 1]))
        print("traced")
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1"},
    )  # HANG_S bounds a hang
    assert result.returncode == 0 and "traced" in result.stdout, result.stderr[-2000:]
    assert "remapper failed" not in result.stderr
