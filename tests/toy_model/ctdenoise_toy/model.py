"""The toy model: LDCT + conv(ReLU(conv(LDCT and its noise level map))), the last convolution starting at zero so that
the model starts as the identity; one Adam, MSE to the co-located NDCT patch."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ctdenoise.trainer_module.data import CHANNELS, image_of
from ctdenoise.trainer_module.losses import mse_loss
from ctdenoise.trainer_module.models.base import BYTES_PER_WEIGHT, DenoisingModel
from ctdenoise.trainer_module.models.layers import generator_input
from ctdenoise_toy.params import ToyParams


class ToyDenoiser(DenoisingModel[ToyParams]):
    NAME = "toy"
    PARAMS = ToyParams
    PAIRED = True
    PROGRESS_TERMS = ("mse",)

    def build_state(self, hp: ToyParams) -> None:
        inputs, image = generator_input()
        hidden = keras.layers.Conv2D(hp.toy_channels, 3, padding="same", activation="relu")(inputs)
        residual = keras.layers.Conv2D(1, 3, padding="same", kernel_initializer="zeros")(hidden)
        output = keras.layers.Activation("linear", dtype="float32")(keras.layers.Add()([image, residual]))
        self.G = keras.Model(inputs, output, name="toy")
        self.optimizer = self.adam(self.G.trainable_variables, self.learning_rate)

    @property
    def generator(self) -> keras.Model:
        return self.G

    @property
    def receptive_radius(self) -> int:
        return 2

    def checkpoint(self) -> tf.train.Checkpoint:
        return tf.train.Checkpoint(G=self.G, optimizer=self.optimizer, step=self.step)

    def replica_step(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            losses = self.per_replica({"mse": mse_loss(image_of(b), self.G(a, training=True))})
        self.optimizer.minimize(losses["mse"], self.G.trainable_variables, tape=tape)
        return losses

    @classmethod
    def weights_and_activations(cls, hp: ToyParams) -> tuple[int, int]:
        weights = 9 * hp.toy_channels * (CHANNELS + 1) + hp.toy_channels + 1
        return BYTES_PER_WEIGHT * weights, 4 * hp.batch * hp.patch**2 * (hp.toy_channels + 2)
