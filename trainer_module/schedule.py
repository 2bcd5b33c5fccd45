"""The learning-rate schedule: constant (the TF2 port), or linear decay to 0 (docs/design.md, "The algorithm:
cycle-identity CycleGAN for low-dose CT")."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras


class LinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant learning rate, then optionally linear to 0 at `total_steps`."""

    def __init__(self, initial: float, total_steps: int, decay_start: int | None = None):
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
