"""Trainer for the cycle-identity CycleGAN (SPEC §1), run by the TFX Trainer's `run_fn`."""
import os

# Keras 2 (the `tf_keras` package), not Keras 3: TFX 1.16 and TFMA 0.47 load models
# through `tf.keras`, and this variable makes `tf.keras` resolve to tf_keras too, so
# export, TFMA and serving all run on the one Keras the trainer builds with. It must be
# set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
