"""RED-CNN's training state and step: one network, one Adam, MSE to the co-located NDCT patch.
Its step runs nothing else."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ctdenoise.trainer_module.data import image_of
from ctdenoise.trainer_module.losses import mse_loss
from ctdenoise.trainer_module.models.base import BYTES_PER_WEIGHT, DenoisingModel
from ctdenoise.trainer_module.models.red_cnn import network
from ctdenoise.trainer_module.models.red_cnn.params import RedCNNParams


class RedCNN(DenoisingModel[RedCNNParams]):
    """G: LDCT and its noise level -> NDCT, trained on co-located patch pairs."""

    NAME = "red_cnn"
    PARAMS = RedCNNParams
    PAIRED = True
    PROGRESS_TERMS = ("mse",)
    ONE_THREAD_PER_OP = False
    """One network's chain of wide convolutions has nothing to run beside each op: TensorFlow's
    own threads train it faster (BENCHMARKS.md, roofline)."""

    def build_state(self, hp: RedCNNParams) -> None:
        self.G = network.build_red_cnn(hp)
        self.optimizer = self.adam(self.G.trainable_variables, self.learning_rate)

    @property
    def receptive_radius(self) -> int:
        return network.receptive_radius(self.hp.red_kernel)

    @property
    def generator(self) -> keras.Model:
        return self.G

    def checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(G=self.G, optimizer=self.optimizer, step=self.step)

    @classmethod
    def weights_and_activations(cls, hp: RedCNNParams) -> tuple[int, int]:
        activation_bytes = 4 if hp.mixed_precision == "off" else 2
        return (BYTES_PER_WEIGHT * network.weights(hp), hp.batch * hp.patch**2 * network.maps(hp) * activation_bytes)

    def replica_step(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            losses = self.per_replica({"mse": mse_loss(image_of(b), self.G(a, training=True))})
        self.optimizer.minimize(losses["mse"], self.G.trainable_variables, tape=tape)
        return losses
