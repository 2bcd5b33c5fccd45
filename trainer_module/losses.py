"""Loss terms of the models (docs/design.md, "The algorithm: cycle-identity CycleGAN for low-dose CT", design, "The
model family"), one short function each.

With G: LDCT(A) -> NDCT(B), F: B -> A and discriminators D_A, D_B, one step minimises

    generator total = lsgan_generator_loss(D_B(G(a)))            # adversarial, G
                    + lsgan_generator_loss(D_A(F(b)))            # adversarial, F
                    + cycle_loss(a, F(G(a)), λ) + cycle_loss(b, G(F(b)), λ)
                    + identity_loss(a, F(a), γ) + identity_loss(b, G(b), γ)

i.e. cycle = λ·(L1(a, F(G(a))) + L1(b, G(F(b)))) and identity = γ·(L1(F(a), a) +
L1(G(b), b)) with λ = 10, γ = 5, jointly over G and F; and, separately,
discriminator_loss for D_A (real a vs pooled F(b)) and D_B (real b vs pooled G(a)).
Least-squares GAN: the discriminators regress 1 for real and 0 for fake. With paired
patches a supervised term λ_sup·L1(G(a), b) can join the generators' total (off in the
paper's unpaired method; docs/design.md, "Making the adversarial game start"). RED-CNN minimises mse_loss to the NDCT.
"""

from __future__ import annotations

import tensorflow as tf


def _mean_squared_error(logits: tf.Tensor, target: float) -> tf.Tensor:
    return tf.reduce_mean(tf.square(tf.cast(logits, tf.float32) - target))


def _mean_absolute_error(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.abs(tf.cast(x, tf.float32) - tf.cast(y, tf.float32)))


def lsgan_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
    """The generator wants the discriminator to call its output real (1)."""
    return _mean_squared_error(fake_logits, 1.0)


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Real -> 1, fake -> 0, halved so that D learns at half the rate of G (as in CycleGAN)."""
    return 0.5 * (_mean_squared_error(real_logits, 1.0) + _mean_squared_error(fake_logits, 0.0))


def cycle_loss(real: tf.Tensor, cycled: tf.Tensor, lam: float) -> tf.Tensor:
    """λ·L1: going to the other domain and back must return the input."""
    return lam * _mean_absolute_error(real, cycled)


def supervised_loss(ndct: tf.Tensor, denoised: tf.Tensor, lam: float) -> tf.Tensor:
    """λ_sup·L1 between G(a) and the co-located NDCT patch b. The NDCT's own noise is
    independent of the LDCT's, so this pulls G towards the noise-free image (as in
    Noise2Noise), not towards the NDCT's noise."""
    return lam * _mean_absolute_error(ndct, denoised)


def mse_loss(ndct: tf.Tensor, denoised: tf.Tensor) -> tf.Tensor:
    """Mean squared error between the output and the co-located NDCT patch (RED-CNN)."""
    return tf.reduce_mean(tf.square(tf.cast(denoised, tf.float32) - tf.cast(ndct, tf.float32)))


def identity_loss(real: tf.Tensor, same: tf.Tensor, gamma: float) -> tf.Tensor:
    """γ·L1: a generator fed an image already in its target domain must leave it alone;
    this keeps the CT numbers (HU) of tissue that needs no denoising."""
    return gamma * _mean_absolute_error(real, same)


def judgement(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> dict[str, tf.Tensor]:
    """How a discriminator is doing: its mean output on real and fake input, and the share of
    its logits strictly on the right side of 0.5 (a discriminator that cannot tell real from
    fake scores about 0.5; LSGAN's undecided optimum, 0.5 everywhere, scores 0)."""
    real, fake = tf.cast(real_logits, tf.float32), tf.cast(fake_logits, tf.float32)
    right = 0.5 * (tf.reduce_mean(tf.cast(real > 0.5, tf.float32)) + tf.reduce_mean(tf.cast(fake < 0.5, tf.float32)))
    return {"real": tf.reduce_mean(real), "fake": tf.reduce_mean(fake), "accuracy": right}
