"""Training of the cycle-identity CycleGAN: the step, the state, and the resumable loop.

`CycleGAN` owns every piece of training state (four models, three optimizers, the
step counter, two image pools) so that one `tf.train.Checkpoint` captures it all and a
killed run resumes at the same step with the same Adam moments. `fit` drives it:
restore, train to `hp.total_steps`, guard against divergence, log to TensorBoard,
checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from components.features import SOFT_TISSUE_LEVEL, SOFT_TISSUE_WIDTH

from .data import denormalize
from .hparams import HParams
from .image_pool import ImagePool
from .losses import cycle_loss, discriminator_loss, identity_loss, lsgan_generator_loss
from .models import build_discriminator, build_generator

PSNR_DATA_RANGE = 2.0
"""Images in [-1, 1] (SPEC §1)."""


class NonFiniteLossError(FloatingPointError):
    """Training diverged; raised before anything is saved so no NaN model is kept."""


def make_strategy() -> tf.distribute.Strategy:
    """Multi-worker when TF_CONFIG names several workers, one machine's GPUs when there
    are several, else the default (single-device) strategy."""
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    if len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def uses_mixed_precision(hp: HParams) -> bool:
    """float16 compute pays off on GPUs only; on a CPU it is slower, so 'auto' keeps float32."""
    if hp.mixed_precision == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return hp.mixed_precision == "on"


@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    """Keras layers take the global policy when built; restore it afterwards so that
    building this GAN does not change models built elsewhere in the process."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant learning rate, then optionally linear to 0 at `total_steps`."""

    def __init__(self, initial: float, total_steps: int, decay_start: Optional[int] = None):
        self.initial = initial
        self.total_steps = total_steps
        self.decay_start = decay_start

    def __call__(self, step) -> tf.Tensor:
        initial = tf.constant(self.initial, tf.float32)
        if self.decay_start is None:
            return initial
        remaining = (self.total_steps - tf.cast(step, tf.float32)) / (self.total_steps - self.decay_start)
        return initial * tf.clip_by_value(remaining, 0.0, 1.0)

    def get_config(self) -> dict:
        return {"initial": self.initial, "total_steps": self.total_steps, "decay_start": self.decay_start}


class CycleGAN(tf.Module):
    """G: LDCT (A) -> NDCT (B), F: B -> A, discriminators D_A and D_B, and their optimizers."""

    def __init__(self, hp: HParams, strategy: Optional[tf.distribute.Strategy] = None):
        super().__init__(name="cycle_gan")
        self.hp = hp
        self.strategy = strategy or tf.distribute.get_strategy()
        self.mixed_precision = uses_mixed_precision(hp)
        keras.utils.set_random_seed(hp.seed)  # reproducible initial weights
        policy = "mixed_float16" if self.mixed_precision else "float32"
        with self.strategy.scope(), _dtype_policy(policy):
            self.G = build_generator(hp, "G_ldct_to_ndct")
            self.F = build_generator(hp, "F_ndct_to_ldct")
            self.D_A = build_discriminator(hp, "D_A_ldct")
            self.D_B = build_discriminator(hp, "D_B_ndct")
            self.learning_rate = LinearDecay(hp.lr, hp.total_steps, hp.decay_start_step)
            self.generator_optimizer = self._adam(self.generator_variables)
            self.D_A_optimizer = self._adam(self.D_A.trainable_variables)
            self.D_B_optimizer = self._adam(self.D_B.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            patch_shape = [hp.patch, hp.patch, 1]
            self.pool_A = ImagePool(hp.pool_size, patch_shape, hp.use_pool, hp.seed, "pool_A")
            self.pool_B = ImagePool(hp.pool_size, patch_shape, hp.use_pool, hp.seed + 1, "pool_B")
        # No AutoGraph: the step has no data-dependent Python control flow, and
        # converting the Keras internals it calls makes the first trace about 3x
        # slower (35 s instead of 13 s for the tiny preset on 2 cores).
        self._compiled_replica_step = tf.function(self._replica_step, jit_compile=hp.jit_compile, autograph=False)
        self.train_step = tf.function(self._train_step, autograph=False)

    @property
    def completed_steps(self) -> int:
        return int(self.step.numpy())

    @property
    def generator_variables(self) -> list[tf.Variable]:
        return self.G.trainable_variables + self.F.trainable_variables

    def _adam(self, variables: list[tf.Variable]) -> keras.optimizers.Optimizer:
        """Adam with its slots built now, so that a checkpoint restores them at once
        instead of waiting for the first step."""
        optimizer = keras.optimizers.Adam(self.learning_rate, beta_1=self.hp.beta1, beta_2=self.hp.beta2)
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
        """G in inference mode on whole slices in [-1, 1]."""
        return self.G(ldct, training=False)

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

            g_adv_ab = lsgan_generator_loss(self.D_B(fake_b, training=True))
            g_adv_ba = lsgan_generator_loss(self.D_A(fake_a, training=True))
            cycle = cycle_loss(a, cycled_a, hp.cycle_lambda) + cycle_loss(b, cycled_b, hp.cycle_lambda)
            identity = identity_loss(a, same_a, hp.identity_gamma) + identity_loss(b, same_b, hp.identity_gamma)
            g_total = g_adv_ab + g_adv_ba + cycle + identity

            d_a = discriminator_loss(self.D_A(a, training=True), self.D_A(self.pool_A.query(fake_a), training=True))
            d_b = discriminator_loss(self.D_B(b, training=True), self.D_B(self.pool_B.query(fake_b), training=True))

            # Each replica's share of the global mean: gradients and the reported
            # losses are summed across replicas.
            losses = {
                "g_adv_ab": g_adv_ab, "g_adv_ba": g_adv_ba, "cycle": cycle, "identity": identity,
                "g_total": g_total, "d_a": d_a, "d_b": d_b,
            }
            losses = {name: value / self.strategy.num_replicas_in_sync for name, value in losses.items()}

        self.generator_optimizer.minimize(losses["g_total"], self.generator_variables, tape=tape)
        self.D_A_optimizer.minimize(losses["d_a"], self.D_A.trainable_variables, tape=tape)
        self.D_B_optimizer.minimize(losses["d_b"], self.D_B.trainable_variables, tape=tape)
        return losses


def reestimate_batch_norm(model: keras.Model, batches: Iterator[tf.Tensor], count: int) -> None:
    """Replace the BatchNorm moving statistics of `model` by their plain average over `count`
    batches seen in training mode ("precise BN").

    BN's own update is reused with momentum (k-1)/k at the k-th batch, which turns the
    exponential moving average into a cumulative one; every layer sees the statistics of
    its input as produced by the layers before it, exactly as in training.
    """
    norms = [layer for layer in model.submodules if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    try:
        for k in range(1, count + 1):
            for layer in norms:
                layer.momentum = (k - 1) / k
            model(next(batches), training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


def fit(
    dataset_a: tf.data.Dataset,
    dataset_b: tf.data.Dataset,
    hp: HParams,
    checkpoint_dir: str | Path,
    log_dir: str | Path,
    eval_pairs: Optional[tuple[np.ndarray, np.ndarray]] = None,
    progress: Callable[[str], None] = print,
    gan: Optional[CycleGAN] = None,
) -> dict:
    """Train to `hp.total_steps`, resuming from the latest checkpoint in `checkpoint_dir`.

    `dataset_a` / `dataset_b` yield batches of LDCT / NDCT patches, float32 in [-1, 1],
    shaped [hp.batch, hp.patch, hp.patch, 1]; they are repeated here. `eval_pairs` is
    (ldct, ndct), whole slices [n, H, W, 1] in [-1, 1], for the PSNR and image summaries.
    Pass `gan` to keep the trained models (e.g. for export); by default one is built
    under `make_strategy()`.

    Returns {"steps", "seconds", "steps_per_second", "losses": {...}, "checkpoint"} plus
    "psnr": {"ldct_vs_ndct", "denoised_vs_ndct"} when `eval_pairs` is given.
    """
    if gan is None:
        gan = CycleGAN(hp, make_strategy())
    elif gan.hp != hp:
        raise ValueError("fit() got a CycleGAN built with other hyperparameters")
    manager = tf.train.CheckpointManager(gan.checkpoint(), str(checkpoint_dir), max_to_keep=3)
    if manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        progress(f"resumed from {manager.latest_checkpoint} at step {gan.completed_steps}")
    batches = iter(gan.strategy.experimental_distribute_dataset(
        tf.data.Dataset.zip((dataset_a, dataset_b)).repeat()
    ))
    writer = tf.summary.create_file_writer(str(log_dir))
    step = first_step = gan.completed_steps
    losses: dict[str, float] = {}
    psnr: dict[str, float] = {}
    started = time.perf_counter()
    throughput = _Throughput(step)
    with writer.as_default():
        while step < hp.total_steps:
            a, b = _next_batch(batches)
            losses = {name: float(value) for name, value in gan.train_step(a, b).items()}
            step = gan.completed_steps
            _check_finite(losses, step)
            last = step == hp.total_steps
            if step % hp.summary_every == 0 or last:
                psnr = _write_summaries(gan, losses, step, eval_pairs)
            if step % hp.checkpoint_every == 0 or last:
                manager.save(checkpoint_number=step)
            if step % hp.log_every == 0 or last:
                progress(_progress_line(step, hp.total_steps, throughput.read(step), losses))
            if step == first_step + 1:  # leave the first step's tracing out of the rate
                throughput.restart(step)
    seconds = time.perf_counter() - started
    result = {
        "steps": step,
        "seconds": seconds,
        "steps_per_second": (step - first_step) / seconds if step > first_step else 0.0,
        "losses": losses,
        "checkpoint": manager.latest_checkpoint,
    }
    if psnr:
        result["psnr"] = psnr
    return result


class _Throughput:
    """Steps per second since the previous reading."""

    def __init__(self, step: int):
        self.restart(step)

    def restart(self, step: int) -> None:
        self.step, self.time = step, time.perf_counter()

    def read(self, step: int) -> float:
        rate = (step - self.step) / (time.perf_counter() - self.time)
        self.restart(step)
        return rate


def _next_batch(batches: Iterator) -> tuple:
    try:
        return next(batches)
    except StopIteration:
        raise ValueError("training data is empty: a dataset yielded no batch") from None


def _check_finite(losses: dict[str, float], step: int) -> None:
    for name, value in losses.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(f"non-finite loss {name!r} at step {step}")


def _write_summaries(
    gan: CycleGAN, losses: dict[str, float], step: int,
    eval_pairs: Optional[tuple[np.ndarray, np.ndarray]],
) -> dict[str, float]:
    """Scalars for every loss term and the learning rate; with `eval_pairs`, PSNR and
    LDCT | denoised | NDCT images. Returns the PSNR values written."""
    for name, value in losses.items():
        tf.summary.scalar("lr" if name == "lr" else f"loss/{name}", value, step=step)
    if eval_pairs is None:
        return {}
    ldct, ndct = (tf.constant(x, tf.float32) for x in eval_pairs)
    denoised = gan.denoise(ldct)
    psnr = {
        "ldct_vs_ndct": _mean_psnr(ldct, ndct),
        "denoised_vs_ndct": _mean_psnr(denoised, ndct),
    }
    for name, value in psnr.items():
        tf.summary.scalar(f"psnr/{name}", value, step=step)
    side_by_side = tf.concat([ldct, denoised, ndct], axis=2)
    tf.summary.image("images/ldct_denoised_ndct", soft_tissue_window(side_by_side), step=step, max_outputs=3)
    return psnr


def log_exported_psnr(gan: CycleGAN, eval_pairs: tuple[np.ndarray, np.ndarray], log_dir: str | Path) -> float:
    """PSNR of the generator as exported (after BN re-estimation) on the eval slices, also
    written to TensorBoard as psnr/exported_vs_ndct at the final step."""
    ldct, ndct = (tf.constant(x, tf.float32) for x in eval_pairs)
    value = _mean_psnr(gan.denoise(ldct), ndct)
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        tf.summary.scalar("psnr/exported_vs_ndct", value, step=gan.completed_steps)
    return value


def _mean_psnr(x: tf.Tensor, reference: tf.Tensor) -> float:
    """PSNR on normalised images (data range 2), as the original evaluated."""
    return float(tf.reduce_mean(tf.image.psnr(x, reference, max_val=PSNR_DATA_RANGE)))


def soft_tissue_window(normalised: tf.Tensor) -> tf.Tensor:
    """[-1, 1] images -> HU -> the soft-tissue window W400/L40 as [0, 1] grey levels."""
    low = SOFT_TISSUE_LEVEL - SOFT_TISSUE_WIDTH / 2
    return tf.clip_by_value((denormalize(normalised) - low) / SOFT_TISSUE_WIDTH, 0.0, 1.0)


def _progress_line(step: int, total: int, steps_per_second: float, losses: dict[str, float]) -> str:
    eta = (total - step) / steps_per_second if steps_per_second > 0 else float("inf")
    terms = "  ".join(f"{name} {losses[name]:.4f}" for name in ("g_total", "cycle", "identity", "d_a", "d_b"))
    return f"step {step}/{total}  {steps_per_second:.2f} steps/s  ETA {_duration(eta)}  {terms}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
