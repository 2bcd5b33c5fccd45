"""Loss terms on small tensors whose values are easy to work out by hand."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

from ctdenoise.trainer_module.losses import (
    cycle_loss,
    discriminator_loss,
    identity_loss,
    judgement,
    lsgan_generator_loss,
    supervised_loss,
)


def test_generator_loss_is_mean_squared_distance_to_real():
    # (1-1)^2, (0-1)^2, (3-1)^2, (-1-1)^2 -> 0, 1, 4, 4 -> mean 2.25
    assert float(lsgan_generator_loss(tf.constant([[1.0, 0.0], [3.0, -1.0]]))) == pytest.approx(2.25)


def test_discriminator_loss_halves_real_plus_fake_terms():
    real = tf.constant([1.0, 0.0])  # (0 + 1) / 2 = 0.5
    fake = tf.constant([0.0, 2.0])  # (0 + 4) / 2 = 2.0
    assert float(discriminator_loss(real, fake)) == pytest.approx((0.5 + 2.0) / 2)


def test_perfect_discriminator_has_zero_loss():
    assert float(discriminator_loss(tf.ones([4, 25]), tf.zeros([4, 25]))) == 0.0


def test_cycle_loss_is_lambda_times_mean_absolute_error():
    real = tf.constant([[0.0, 1.0], [-1.0, 0.5]])
    cycled = tf.constant([[0.5, 1.0], [-1.0, -0.5]])  # |diff| 0.5, 0, 0, 1 -> mean 0.375
    assert float(cycle_loss(real, cycled, 10.0)) == pytest.approx(3.75)


def test_identity_loss_is_gamma_times_mean_absolute_error():
    real = tf.constant([0.2, -0.2])
    same = tf.constant([0.0, 0.0])  # mean 0.2
    assert float(identity_loss(real, same, 5.0)) == pytest.approx(1.0)


def test_losses_are_float32_for_float16_inputs():
    half = tf.constant([0.5, 0.25], tf.float16)
    assert lsgan_generator_loss(half).dtype == tf.float32
    assert cycle_loss(half, tf.zeros([2], tf.float16), 10.0).dtype == tf.float32


def test_supervised_loss_is_lambda_times_mean_absolute_error_to_the_ndct():
    ndct, denoised = tf.constant([0.0, 0.2, -0.4]), tf.constant([0.1, 0.2, 0.0])
    assert float(supervised_loss(ndct, denoised, 10.0)) == pytest.approx(10 * (0.1 + 0.0 + 0.4) / 3)


def test_judgement_reads_the_mean_outputs_and_the_share_on_the_right_side():
    judged = judgement(tf.constant([0.9, 0.7, 0.2, 0.6]), tf.constant([0.1, 0.6]))
    assert float(judged["real"]) == pytest.approx(0.6) and float(judged["fake"]) == pytest.approx(0.35)
    assert float(judged["accuracy"]) == pytest.approx(0.5 * (3 / 4 + 1 / 2))
    undecided = judgement(tf.fill([25], 0.5), tf.fill([25], 0.5))
    assert float(undecided["accuracy"]) == 0.0  # exactly 0.5 is on neither side
