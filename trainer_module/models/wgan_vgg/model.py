"""WGAN-VGG's training state and step: the generator, the critic, the frozen VGG19, and one
Adam each for the generator and the critic.

One step: the generator denoises the LDCT batch once; the critic then takes `n_critic` updates
on that batch (each with a fresh gradient-penalty interpolation), and the generator one:

    critic:    D(G(a)) - D(b) + λ·(‖∇D(x̂)‖ - 1)²,   x̂ = ε·b + (1 - ε)·G(a)
    generator: -D(G(a)) + λ₁·MSE(VGG(G(a)), VGG(b))

The paper's code drew a new batch for each critic update; here the loop feeds one batch a step
(docs/design.md, "The model family").
"""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ctdenoise.trainer_module.data import image_of
from ctdenoise.trainer_module.losses import mse_loss
from ctdenoise.trainer_module.models.base import BYTES_PER_WEIGHT, DenoisingModel
from ctdenoise.trainer_module.models.wgan_vgg import networks, vgg
from ctdenoise.trainer_module.models.wgan_vgg.params import WganVggParams


class WganVgg(DenoisingModel[WganVggParams]):
    """G: LDCT -> NDCT, trained on co-located patch pairs against a critic and VGG19 features."""

    NAME = "wgan_vgg"
    PARAMS = WganVggParams
    PAIRED = True
    PROGRESS_TERMS = ("g_total", "perceptual", "critic", "wasserstein")

    def build_state(self, hp: WganVggParams) -> None:
        self.G = networks.build_generator(hp)
        self.D = networks.build_critic(hp)
        self.vgg = vgg.vgg_features(hp.vgg_weights)
        self.generator_optimizer = self.adam(self.G.trainable_variables, self.learning_rate)
        self.critic_optimizer = self.adam(self.D.trainable_variables, self.learning_rate)

    @classmethod
    def preflight(cls, hp: WganVggParams) -> None:
        vgg.vgg_features(hp.vgg_weights)

    @property
    def generator(self) -> keras.Model:
        return self.G

    @property
    def receptive_radius(self) -> int:
        return networks.RECEPTIVE_RADIUS

    def checkpoint(self) -> tf.train.Checkpoint:
        """VGG19 is left out: it is frozen and comes from the user's file."""
        return tf.train.Checkpoint(
            G=self.G,
            D=self.D,
            generator_optimizer=self.generator_optimizer,
            critic_optimizer=self.critic_optimizer,
            step=self.step,
        )

    @classmethod
    def weights_and_activations(cls, hp: WganVggParams) -> tuple[int, int]:
        """Trained weights with gradients and Adam state, VGG19's 20 M frozen weights, and the
        activations of the generator and of VGG19 on the output and the NDCT."""
        activation_bytes = 4 if hp.mixed_precision == "off" else 2
        trained = BYTES_PER_WEIGHT * (networks.generator_weights(hp) + networks.critic_weights(hp))
        frozen = 4 * vgg.VGG19_WEIGHTS
        maps = (networks.GENERATOR_CONVS - 1) * hp.wgan_channels + 2 * vgg.ACTIVATION_MAPS_PER_PIXEL
        return trained + frozen, int(hp.batch * hp.patch**2 * maps * activation_bytes)

    def replica_step(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        hp = self.hp
        b = image_of(b)  # the critic and VGG19 judge images; only G reads a level
        fake = tf.stop_gradient(tf.cast(self.G(a, training=True), tf.float32))
        for update in range(hp.n_critic):
            with tf.GradientTape() as tape:
                wasserstein = tf.reduce_mean(self.D(b, training=True)) - tf.reduce_mean(self.D(fake, training=True))
                penalty = self._gradient_penalty(b, fake, update)
                critic = -wasserstein + hp.gp_lambda * penalty
                share = self.per_replica({"critic": critic})["critic"]  # inside the tape: its gradient is applied
            self.critic_optimizer.minimize(share, self.D.trainable_variables, tape=tape)
        with tf.GradientTape() as tape:
            denoised = self.G(a, training=True)
            adversarial = -tf.reduce_mean(self.D(denoised, training=True))
            perceptual = hp.perceptual_lambda * mse_loss(self.vgg(vgg.vgg_input(b)), self.vgg(vgg.vgg_input(denoised)))
            losses = self.per_replica(
                {"g_adv": adversarial, "perceptual": perceptual, "g_total": adversarial + perceptual}
            )
        self.generator_optimizer.minimize(losses["g_total"], self.G.trainable_variables, tape=tape)
        losses.update(self.per_replica({"critic": critic, "wasserstein": wasserstein, "gradient_penalty": penalty}))
        return losses

    def _gradient_penalty(self, real: tf.Tensor, fake: tf.Tensor, update: int) -> tf.Tensor:
        """(‖∇D(x̂)‖₂ - 1)² at points x̂ between real and fake patches, drawn from the seed and
        the step so that a resumed or repeated run draws the same points."""
        seed = tf.stack([tf.cast(self.hp.seed, tf.int64), self.step * self.hp.n_critic + update])
        epsilon = tf.random.stateless_uniform([tf.shape(real)[0], 1, 1, 1], seed=seed)
        mixed = epsilon * real + (1.0 - epsilon) * fake
        with tf.GradientTape() as tape:
            tape.watch(mixed)
            score = self.D(mixed, training=True)
        gradients = tape.gradient(score, mixed)
        norm = tf.sqrt(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]) + 1e-12)
        return tf.reduce_mean(tf.square(norm - 1.0))
