"""What every model is to the rest of the Trainer: the training state behind one interface.

`loop.fit`, resume, the TensorBoard summaries, BatchNorm re-estimation, export, the
multi-worker worker and `denoise` use only this interface and never name a concrete model
(docs/design.md, "The model family"). A model owns every piece of its training state (networks,
optimizers, the step counter, any image pools) so that one `tf.train.Checkpoint` captures it
all and a killed run resumes at the same step with the same optimizer moments.
"""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

import tensorflow as tf
import tf_keras as keras

from ctdenoise.trainer_module.determinism import without_memory_optimizer
from ctdenoise.trainer_module.hparams import HParams
from ctdenoise.trainer_module.schedule import LinearDecay
from ctdenoise.trainer_module.strategy import dtype_policy, uses_mixed_precision

P = TypeVar("P", bound=HParams)
"""A model's hyperparameters: its `Params` dataclass."""

BYTES_PER_WEIGHT = 16
"""Memory per trainable float32 weight during training: the weight, its gradient and Adam's two moments."""


def infer(generator: keras.Model, normalised: tf.Tensor) -> tf.Tensor:
    """The generator in inference mode on images in [-1, 1] with their level maps, float32 and
    clipped to [-1, 1], the HU window: a
    generator without an output tanh can leave it. Training keeps the unclipped output,
    whose gradient does not vanish outside the window."""
    output = tf.cast(generator(normalised, training=False), tf.float32)
    return tf.clip_by_value(output, -1.0, 1.0)


class DenoisingModel(tf.Module, Generic[P]):
    """A trainable LDCT → NDCT denoiser: build it from its hyperparameters, call `train_step(a, b)`
    on batches of LDCT patches `a` and NDCT patches `b`, save `checkpoint()`, export `generator`.

    A subclass names itself (`NAME`, the value of `hp.model`), names its hyperparameters' dataclass
    (`PARAMS`, extending the shared `HParams` with what only it reads), whether it needs co-located
    patch pairs (`PAIRED`; None: `hp.paired` decides), the generator's receptive radius, the loss
    terms the progress line shows, and builds its networks and per-replica step.
    """

    NAME: ClassVar[str]
    PARAMS: ClassVar[type[HParams]]
    PAIRED: ClassVar[bool | None]
    PROGRESS_TERMS: ClassVar[tuple[str, ...]]
    """Loss terms the progress line shows, in order."""
    JUDGES: ClassVar[tuple[str, ...]] = ()
    """Discriminators whose accuracy (`<name>/accuracy`) the progress line shows."""
    ONE_THREAD_PER_OP: ClassVar[bool] = True
    """Whether its training step runs faster with each op on one thread on a small CPU
    (`ctdenoise.tensorflow_env.training_threads`): true where the step has many small ops that
    can run side by side, as the GANs' two generators and discriminators do (BENCHMARKS.md,
    roofline)."""

    def __init__(self, hp: P, strategy: tf.distribute.Strategy | None = None):
        super().__init__(name=self.NAME)
        self.hp = hp
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if hp.batch % replicas:  # uneven slices would break the per-replica loss scaling
            raise ValueError(
                f"batch {hp.batch} does not split evenly over {replicas} replicas: use a multiple of {replicas}"
            )
        self.mixed_precision = uses_mixed_precision(hp)
        keras.utils.set_random_seed(hp.seed)  # reproducible initial weights
        with self.strategy.scope(), dtype_policy("mixed_float16" if self.mixed_precision else "float32"):
            self.learning_rate = LinearDecay(hp.lr, hp.total_steps, hp.decay_start_step)
            self.build_state(hp)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # No AutoGraph: the steps have no data-dependent Python control flow, and converting
        # the Keras internals they call makes the first trace about 3x slower.
        self._compiled_replica_step = tf.function(self.replica_step, jit_compile=hp.jit_compile, autograph=False)
        self.train_step = tf.function(self._train_step, autograph=False)
        if hp.deterministic:
            self.train_step = without_memory_optimizer(self.train_step)

    # What a subclass provides.

    def build_state(self, hp: P) -> None:
        """Build the networks and optimizers (inside the strategy's scope and dtype policy)."""
        raise NotImplementedError

    @property
    def generator(self) -> keras.Model:
        """The LDCT → NDCT network that is exported."""
        raise NotImplementedError

    @property
    def reverse_generator(self) -> keras.Model | None:
        """The NDCT → LDCT network of a model that has one (a CycleGAN's F), exported beside the
        generator so that a warm start can seed both (docs/design.md, "Warm start"); None here."""
        return None

    @property
    def receptive_radius(self) -> int:
        """Pixels of context the generator reads on each side of an output pixel: `denoise`
        tiles large slices with more overlap than this."""
        raise NotImplementedError

    def checkpoint(self) -> tf.train.Checkpoint:
        """All training state; export code can restore just the generator with expect_partial()."""
        raise NotImplementedError

    def replica_step(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        """One step's forward, backward and updates on this replica's share of the batch;
        returns each loss term as this replica's share of the global mean."""
        raise NotImplementedError

    @classmethod
    def preflight(cls, hp: P) -> None:
        """Refuse in one line what would stop training only once the Trainer builds the model,
        such as a file the model needs (ValueError); nothing by default."""

    @classmethod
    def weights_and_activations(cls, hp: P) -> tuple[int, int]:
        """Lower bounds of training memory in bytes: trainable weights with their gradients and
        Adam state, and the activations backpropagation must keep (`check_memory`)."""
        raise NotImplementedError

    # What every model shares.

    @property
    def completed_steps(self) -> int:
        return int(self.step.numpy())

    def adam(self, variables: list[tf.Variable], learning_rate: LinearDecay) -> keras.optimizers.Optimizer:
        """Adam with its slots built now, so that a checkpoint restores them at once instead of
        waiting for the first step."""
        optimizer = keras.optimizers.Adam(learning_rate, beta_1=self.hp.beta1, beta_2=self.hp.beta2)
        if self.mixed_precision:
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        optimizer.build(variables)
        return optimizer

    def per_replica(self, losses: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Each replica's share of the global mean: gradients and reported losses are summed
        across replicas."""
        return {name: value / self.strategy.num_replicas_in_sync for name, value in losses.items()}

    @tf.function(reduce_retracing=True, autograph=False)
    def denoise(self, ldct: tf.Tensor) -> tf.Tensor:
        """The generator in inference mode on whole slices in [-1, 1] with their level maps, as
        exported (`infer`)."""
        return infer(self.generator, ldct)

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
