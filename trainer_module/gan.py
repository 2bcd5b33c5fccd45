"""The cycle-identity CycleGAN's training state and its step (docs/design.md §1).

`CycleGAN` owns every piece of training state (four models, three optimizers, the step
counter, two image pools) so that one `tf.train.Checkpoint` captures it all and a killed
run resumes at the same step with the same Adam moments. One step, as in the paper:

    fake_b = G(a), fake_a = F(b)                       (denoised LDCT, noisy NDCT)
    generators: LSGAN(D_B(fake_b)) + LSGAN(D_A(fake_a)) + cycle + identity   (one Adam, G and F)
    D_A: real a vs pooled fake_a;  D_B: real b vs pooled fake_b          (an Adam each)
"""
from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tf_keras as keras

from trainer_module.data import soft_tissue_window
from trainer_module.determinism import without_memory_optimizer
from trainer_module.hparams import HParams
from trainer_module.image_pool import ImagePool
from trainer_module.losses import (
    cycle_loss,
    discriminator_loss,
    identity_loss,
    judgement,
    lsgan_generator_loss,
    supervised_loss,
)
from trainer_module.models import build_discriminator, build_generator, infer
from trainer_module.schedule import LinearDecay
from trainer_module.strategy import dtype_policy, uses_mixed_precision


class CycleGAN(tf.Module):
    """G: LDCT (A) -> NDCT (B), F: B -> A, discriminators D_A and D_B, and their optimizers."""

    def __init__(self, hp: HParams, strategy: Optional[tf.distribute.Strategy] = None):
        super().__init__(name="cycle_gan")
        self.hp = hp
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if hp.batch % replicas:  # uneven slices would break the per-replica loss scaling below
            raise ValueError(f"batch {hp.batch} does not split evenly over {replicas} replicas: "
                             f"use a multiple of {replicas}")
        self.mixed_precision = uses_mixed_precision(hp)
        keras.utils.set_random_seed(hp.seed)  # reproducible initial weights
        policy = "mixed_float16" if self.mixed_precision else "float32"
        with self.strategy.scope(), dtype_policy(policy):
            self.G = build_generator(hp, "G_ldct_to_ndct")
            self.F = build_generator(hp, "F_ndct_to_ldct")
            self.D_A = build_discriminator(hp, "D_A_ldct")
            self.D_B = build_discriminator(hp, "D_B_ndct")
            self.learning_rate = LinearDecay(hp.lr, hp.total_steps, hp.decay_start_step)
            d_learning_rate = LinearDecay(hp.lr * hp.d_lr_scale, hp.total_steps, hp.decay_start_step)
            self.generator_optimizer = self._adam(self.generator_variables, self.learning_rate)
            self.D_A_optimizer = self._adam(self.D_A.trainable_variables, d_learning_rate)
            self.D_B_optimizer = self._adam(self.D_B.trainable_variables, d_learning_rate)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            patch_shape = [hp.patch, hp.patch, 1]
            self.pool_A = ImagePool(hp.pool_size, patch_shape, hp.use_pool, hp.seed, "pool_A")
            self.pool_B = ImagePool(hp.pool_size, patch_shape, hp.use_pool, hp.seed + 1, "pool_B")
        # No AutoGraph: the step has no data-dependent Python control flow, and
        # converting the Keras internals it calls makes the first trace about 3x
        # slower (35 s instead of 13 s for the tiny preset on 2 cores).
        self._compiled_replica_step = tf.function(self._replica_step, jit_compile=hp.jit_compile, autograph=False)
        self.train_step = tf.function(self._train_step, autograph=False)
        if hp.deterministic:
            self.train_step = without_memory_optimizer(self.train_step)

    @property
    def completed_steps(self) -> int:
        return int(self.step.numpy())

    @property
    def generator_variables(self) -> list[tf.Variable]:
        return self.G.trainable_variables + self.F.trainable_variables

    def _adam(self, variables: list[tf.Variable], learning_rate: LinearDecay) -> keras.optimizers.Optimizer:
        """Adam with its slots built now, so that a checkpoint restores them at once
        instead of waiting for the first step."""
        optimizer = keras.optimizers.Adam(learning_rate, beta_1=self.hp.beta1, beta_2=self.hp.beta2)
        if self.mixed_precision:
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        optimizer.build(variables)
        return optimizer

    def checkpoint(self) -> tf.train.Checkpoint:
        """All training state; export code can restore just `G` with expect_partial()."""
        return tf.train.Checkpoint(
            G=self.G, F=self.F, D_A=self.D_A, D_B=self.D_B,
            generator_optimizer=self.generator_optimizer,
            D_A_optimizer=self.D_A_optimizer, D_B_optimizer=self.D_B_optimizer,
            step=self.step, pool_A=self.pool_A, pool_B=self.pool_B,
        )

    @tf.function(reduce_retracing=True, autograph=False)
    def denoise(self, ldct: tf.Tensor) -> tf.Tensor:
        """G in inference mode on whole slices in [-1, 1], as exported (`models.infer`)."""
        return infer(self.G, ldct)

    def _train_step(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        """One step on a batch of LDCT patches `a` and NDCT patches `b`, on every replica."""
        per_replica = self.strategy.run(self._compiled_replica_step, args=(a, b))
        losses = {
            name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()
        }
        losses["lr"] = self.learning_rate(self.step)
        self.step.assign_add(1)
        return losses

    def _replica_step(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        hp = self.hp
        with tf.GradientTape(persistent=True) as tape:
            fake_b = self.G(a, training=True)  # denoised LDCT
            fake_a = self.F(b, training=True)  # NDCT made noisy
            cycled_a = self.F(fake_b, training=True)
            cycled_b = self.G(fake_a, training=True)
            same_a = self.F(a, training=True)
            same_b = self.G(b, training=True)

            g_adv_ab = hp.adversarial_weight * lsgan_generator_loss(self._judge_fake(self.D_B, b, fake_b))
            g_adv_ba = hp.adversarial_weight * lsgan_generator_loss(self._judge_fake(self.D_A, a, fake_a))
            cycle = cycle_loss(a, cycled_a, hp.cycle_lambda) + cycle_loss(b, cycled_b, hp.cycle_lambda)
            identity = identity_loss(a, same_a, hp.identity_gamma) + identity_loss(b, same_b, hp.identity_gamma)
            g_total = g_adv_ab + g_adv_ba + cycle + identity
            losses = {"g_adv_ab": g_adv_ab, "g_adv_ba": g_adv_ba, "cycle": cycle, "identity": identity}
            if hp.supervised_lambda:  # a and b are co-located patches (hp.paired)
                losses["supervised"] = supervised_loss(b, fake_b, hp.supervised_lambda)
                g_total += losses["supervised"]

            real_a_logits, pooled_a_logits = self._judge(self.D_A, a, self.pool_A.query(fake_a))
            real_b_logits, pooled_b_logits = self._judge(self.D_B, b, self.pool_B.query(fake_b))
            losses.update(g_total=g_total, d_a=discriminator_loss(real_a_logits, pooled_a_logits),
                          d_b=discriminator_loss(real_b_logits, pooled_b_logits))
            # Each replica's share of the global mean: gradients and the reported
            # losses are summed across replicas.
            losses = {name: value / self.strategy.num_replicas_in_sync for name, value in losses.items()}

        self.generator_optimizer.minimize(losses["g_total"], self.generator_variables, tape=tape)
        self.D_A_optimizer.minimize(losses["d_a"], self.D_A.trainable_variables, tape=tape)
        self.D_B_optimizer.minimize(losses["d_b"], self.D_B.trainable_variables, tape=tape)
        for name, (real, fake) in (("d_a", (real_a_logits, pooled_a_logits)), ("d_b", (real_b_logits, pooled_b_logits))):
            for what, value in judgement(real, fake).items():
                losses[f"{name}/{what}"] = value / self.strategy.num_replicas_in_sync
        return losses

    def _judge(self, discriminator: keras.Model, real: tf.Tensor, fake: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The discriminator's logits for real and fake patches. Called on each batch alone (the
        paper), its BatchNorm normalises real and fake by their own statistics, which erases a
        difference that is constant over a batch, such as the noise level; with
        `d_joint_batch` it sees both in one batch (docs/design.md §1.13)."""
        real, fake = self._d_view(real), self._d_view(fake)
        if not self.hp.d_joint_batch:
            return discriminator(real, training=True), discriminator(fake, training=True)
        logits = discriminator(tf.concat([real, tf.cast(fake, real.dtype)], axis=0), training=True)
        return logits[:tf.shape(real)[0]], logits[tf.shape(real)[0]:]

    def _judge_fake(self, discriminator: keras.Model, real: tf.Tensor, fake: tf.Tensor) -> tf.Tensor:
        """The discriminator's logits for the fakes alone, judged as `_judge` judges them."""
        if not self.hp.d_joint_batch:
            return discriminator(self._d_view(fake), training=True)
        return self._judge(discriminator, real, fake)[1]

    def _d_view(self, patches: tf.Tensor) -> tf.Tensor:
        """What the discriminators see: the patches themselves, or with `d_window` their
        soft-tissue window mapped to [-1, 1] (docs/design.md §1.13)."""
        if not self.hp.d_window:
            return patches
        return soft_tissue_window(patches) * 2.0 - 1.0
