"""The cycle-identity CycleGAN's training state and its step (docs/design.md, "The algorithm: cycle-identity
CycleGAN for low-dose CT").

Four networks, three optimizers, the step counter and two image pools. One step, as in the
paper:

    fake_b = G(a), fake_a = F(b)                       (denoised LDCT, noisy NDCT)
    generators: LSGAN(D_B(fake_b)) + LSGAN(D_A(fake_a)) + cycle + identity   (one Adam, G and F)
    D_A: real a vs pooled fake_a;  D_B: real b vs pooled fake_b          (an Adam each)

With `supervised_lambda` (co-located patches) a supervised term joins the generators' total:
the hybrid configuration.
"""

from __future__ import annotations

from typing import ClassVar

import tensorflow as tf
import tf_keras as keras

from ctdenoise.trainer_module.data import image_of, level_of, soft_tissue_window, with_level
from ctdenoise.trainer_module.image_pool import ImagePool
from ctdenoise.trainer_module.losses import (
    cycle_loss,
    discriminator_loss,
    identity_loss,
    judgement,
    lsgan_generator_loss,
    supervised_loss,
)
from ctdenoise.trainer_module.models.base import BYTES_PER_WEIGHT, DenoisingModel
from ctdenoise.trainer_module.models.cycle_identity import size
from ctdenoise.trainer_module.models.cycle_identity.networks import (
    RECEPTIVE_RADIUS,
    build_discriminator,
    build_generator,
)
from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams, CycleParams
from ctdenoise.trainer_module.schedule import LinearDecay


class CycleIdentityGAN(DenoisingModel[CycleParams]):
    """G: LDCT (A) -> NDCT (B), F: B -> A, discriminators D_A and D_B, and their optimizers."""

    NAME = "cycle_identity"
    PARAMS: ClassVar[type[CycleParams]] = CycleIdentityParams
    PAIRED = None
    PROGRESS_TERMS: ClassVar[tuple[str, ...]] = ("g_total", "cycle", "identity", "d_a", "d_b")
    JUDGES = ("d_a", "d_b")
    IDENTITY: ClassVar[bool] = True
    """Whether the step has the identity term (and computes F(a) and G(b) for it): whether
    `PARAMS` has its weight, `identity_gamma`."""

    def build_state(self, hp: CycleParams) -> None:
        self.G = build_generator(hp, "G_ldct_to_ndct")
        self.F = build_generator(hp, "F_ndct_to_ldct")
        self.D_A = build_discriminator(hp, "D_A_ldct")
        self.D_B = build_discriminator(hp, "D_B_ndct")
        d_learning_rate = LinearDecay(hp.lr * hp.d_lr_scale, hp.total_steps, hp.decay_start_step)
        self.generator_optimizer = self.adam(self.generator_variables, self.learning_rate)
        self.D_A_optimizer = self.adam(self.D_A.trainable_variables, d_learning_rate)
        self.D_B_optimizer = self.adam(self.D_B.trainable_variables, d_learning_rate)
        patch_shape = [hp.patch, hp.patch, 1]
        self.pool_A = ImagePool(hp.pool_size, patch_shape, hp.use_pool, hp.seed, "pool_A")
        self.pool_B = ImagePool(hp.pool_size, patch_shape, hp.use_pool, hp.seed + 1, "pool_B")

    @property
    def generator(self) -> keras.Model:
        return self.G

    @property
    def reverse_generator(self) -> keras.Model:
        return self.F

    @property
    def receptive_radius(self) -> int:
        return RECEPTIVE_RADIUS

    @property
    def generator_variables(self) -> list[tf.Variable]:
        return self.G.trainable_variables + self.F.trainable_variables

    def checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(
            G=self.G,
            F=self.F,
            D_A=self.D_A,
            D_B=self.D_B,
            generator_optimizer=self.generator_optimizer,
            D_A_optimizer=self.D_A_optimizer,
            D_B_optimizer=self.D_B_optimizer,
            step=self.step,
            pool_A=self.pool_A,
            pool_B=self.pool_B,
        )

    @classmethod
    def weights_and_activations(cls, hp: CycleParams) -> tuple[int, int]:
        """The four networks' weights (exact counts) with gradients and Adam state, the
        generators' stored convolution outputs at half precision (unless mixed_precision is
        off) and the image pools. What it leaves out (the discriminators' activations, every
        other intermediate tensor) far outweighs the little it over-counts (BatchNorm's moving
        statistics as if trainable)."""
        weights = BYTES_PER_WEIGHT * 2 * (size.generator_weights(hp) + size.discriminator_weights(hp))
        activation_bytes = 4 if hp.mixed_precision == "off" else 2
        passes = 6 if cls.IDENTITY else 4  # G(a), F(b), two cycles (and two identity mappings)
        activations = passes * hp.batch * hp.patch**2 * size.generator_maps(hp) * activation_bytes + (
            2 * hp.pool_size * hp.patch**2 * 4 if hp.use_pool else 0
        )
        return weights, activations

    def replica_step(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        """Both generators read a level beside the image (docs/design.md, "Noise-level input"):
        G the level of the image it cleans, F the level of the image it must make, which for each
        NDCT patch is the level of the batch's LDCT patch at the same place: the unpaired game
        pairs no slices, so F learns to make the levels of the LDCT it imitates."""
        hp = self.hp
        level = level_of(a)
        a, b_level, b = image_of(a), level_of(b), image_of(b)
        with tf.GradientTape(persistent=True) as tape:
            fake_b = self.G(with_level(a, level), training=True)  # denoised LDCT
            fake_a = self.F(with_level(b, level), training=True)  # NDCT made noisy
            cycled_a = self.F(with_level(fake_b, level), training=True)
            cycled_b = self.G(with_level(fake_a, level), training=True)

            g_adv_ab = hp.adversarial_weight * lsgan_generator_loss(self._judge_fake(self.D_B, b, fake_b))
            g_adv_ba = hp.adversarial_weight * lsgan_generator_loss(self._judge_fake(self.D_A, a, fake_a))
            cycle = cycle_loss(a, cycled_a, hp.cycle_lambda) + cycle_loss(b, cycled_b, hp.cycle_lambda)
            losses = {"g_adv_ab": g_adv_ab, "g_adv_ba": g_adv_ba, "cycle": cycle}
            if self.IDENTITY:
                # Each told its input's own level: nothing to add, nothing to remove.
                same_a = self.F(with_level(a, level), training=True)
                same_b = self.G(with_level(b, b_level), training=True)
                gamma = getattr(hp, "identity_gamma")  # noqa: B009 (only CycleIdentityParams, the cycle-identity model's, has it)
                losses["identity"] = identity_loss(a, same_a, gamma) + identity_loss(b, same_b, gamma)
            if hp.supervised_lambda:  # a and b are co-located patches (hp.paired)
                losses["supervised"] = supervised_loss(b, fake_b, hp.supervised_lambda)
            g_total = sum(losses.values())  # in this order, as the paper's sum

            real_a_logits, pooled_a_logits = self._judge(self.D_A, a, self.pool_A.query(fake_a))
            real_b_logits, pooled_b_logits = self._judge(self.D_B, b, self.pool_B.query(fake_b))
            losses.update(
                g_total=g_total,
                d_a=discriminator_loss(real_a_logits, pooled_a_logits),
                d_b=discriminator_loss(real_b_logits, pooled_b_logits),
            )
            losses = self.per_replica(losses)

        self.generator_optimizer.minimize(losses["g_total"], self.generator_variables, tape=tape)
        self.D_A_optimizer.minimize(losses["d_a"], self.D_A.trainable_variables, tape=tape)
        self.D_B_optimizer.minimize(losses["d_b"], self.D_B.trainable_variables, tape=tape)
        for name, (real, fake) in (
            ("d_a", (real_a_logits, pooled_a_logits)),
            ("d_b", (real_b_logits, pooled_b_logits)),
        ):
            for what, value in self.per_replica(judgement(real, fake)).items():
                losses[f"{name}/{what}"] = value
        return losses

    def _judge(self, discriminator: keras.Model, real: tf.Tensor, fake: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The discriminator's logits for real and fake patches. Called on each batch alone (the
        paper), its BatchNorm normalises real and fake by their own statistics, which erases a
        difference that is constant over a batch, such as the noise level; with
        `d_joint_batch` it sees both in one batch (docs/design.md, "Making the adversarial game start")."""
        real, fake = self._d_view(real), self._d_view(fake)
        if not self.hp.d_joint_batch:
            return discriminator(real, training=True), discriminator(fake, training=True)
        logits = discriminator(tf.concat([real, tf.cast(fake, real.dtype)], axis=0), training=True)
        return logits[: tf.shape(real)[0]], logits[tf.shape(real)[0] :]

    def _judge_fake(self, discriminator: keras.Model, real: tf.Tensor, fake: tf.Tensor) -> tf.Tensor:
        """The discriminator's logits for the fakes alone, judged as `_judge` judges them."""
        if not self.hp.d_joint_batch:
            return discriminator(self._d_view(fake), training=True)
        return self._judge(discriminator, real, fake)[1]

    def _d_view(self, patches: tf.Tensor) -> tf.Tensor:
        """What the discriminators see: the patches themselves, or with `d_window` their
        soft-tissue window mapped to [-1, 1] (docs/design.md, "Making the adversarial game start")."""
        if not self.hp.d_window:
            return patches
        return soft_tissue_window(patches) * 2.0 - 1.0
