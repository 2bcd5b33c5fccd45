"""The one Keras this project builds, exports and loads models with: Keras 2 (`tf_keras`).

TensorFlow 2.16 makes `tf.keras` Keras 3, while TFX 1.16 and TFMA 0.47 load models through
`tf.keras`; with TF_USE_LEGACY_KERAS=1 `tf.keras` resolves to tf_keras too, so training,
export, the Evaluator and serving all agree (docs/design.md §4). TensorFlow reads the
variable when `tf.keras` is first touched: import this module before that, in every entry
point (the command line, the trainer, tests, benchmarks). The component images set it too.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
