"""The four networks match the paper configuration exactly (SPEC §1)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from trainer_module.hparams import preset  # noqa: E402
from trainer_module.models import build_discriminator, build_generator  # noqa: E402


def trainable_parameters(model: keras.Model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


@pytest.fixture(scope="module")
def paper_models():
    hp = preset("paper")
    return build_generator(hp, "G"), build_discriminator(hp, "D")


def test_paper_parameter_counts_match_the_original(paper_models):
    generator, discriminator = paper_models
    assert trainable_parameters(generator) == 3_712_693
    assert trainable_parameters(discriminator) == 2_765_131
    assert 2 * trainable_parameters(generator) + 2 * trainable_parameters(discriminator) == 12_955_648


def test_discriminator_gives_25_logits_for_a_56_pixel_patch(paper_models):
    _, discriminator = paper_models
    assert discriminator(tf.zeros([3, 56, 56, 1])).shape == (3, 25)


def test_batch_norm_uses_the_original_momentum_and_epsilon(paper_models):
    norms = [layer for model in paper_models for layer in model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms
    assert {(layer.momentum, layer.epsilon) for layer in norms} == {(0.1, 1e-5)}


def test_generator_keeps_any_slice_size_and_stays_in_range():
    generator = build_generator(preset("tiny"), "G")
    image = tf.random.uniform([2, 64, 48, 1], -1.0, 1.0, seed=1)
    output = generator(image, training=False)
    assert output.shape == (2, 64, 48, 1)
    assert output.dtype == tf.float32
    assert np.all(np.abs(output.numpy()) < 1.0)
