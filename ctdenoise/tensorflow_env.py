"""What TensorFlow reads from the environment once, when it is first imported: which Keras
`tf.keras` is, and whether its CPU kernels are oneDNN's. Import this module before
TensorFlow in every entry point (the command line, the Kubeflow entrypoint, the
multi-worker worker, tests, benchmarks); the component images set both variables too
(docs/design.md, "What TensorFlow reads at import: Keras 2 and oneDNN").

- Keras 2 (`TF_USE_LEGACY_KERAS=1`). TensorFlow 2.16 makes `tf.keras` Keras 3, while TFX
  1.16 and TFMA 0.47 load models through `tf.keras`; with the variable `tf.keras` resolves
  to tf_keras, so training, export, the Evaluator and serving all agree.
- oneDNN (`TF_ENABLE_ONEDNN_OPTS=1`). TensorFlow turns its oneDNN kernels on by default only
  on CPUs with AVX-512 VNNI, AVX-512 BF16 or AMX. Elsewhere, on AVX2 CPUs, convolutions and
  their gradients run as Eigen's im2col and small matrix products, and the training step
  runs at half the speed (BENCHMARKS.md, "Training step against the CPU's peak"). A value
  the user has set is kept.

The commands that train also call `training_threads` before TensorFlow runs its first op (the
thread pools are made then, not at import).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

SMALL_CPU_CORES = 2
"""Up to this many usable cores, a training process runs each op on one thread."""


def training_threads(one_thread_per_op: bool) -> None:
    """On a CPU of at most SMALL_CPU_CORES cores, run each op of the process on one thread
    (`TF_NUM_INTRAOP_THREADS=1`) when the model asks for it (`DenoisingModel.ONE_THREAD_PER_OP`),
    so that the training step's many small independent ops run side by side instead of each one
    splitting over the cores (BENCHMARKS.md, roofline). Called by the commands that train
    (`ctdenoise run` and `demo`, the multi-worker worker) before TensorFlow runs its first op,
    when it reads the variable; the inference the same process does after training (Evaluator,
    `denoise` in the demo) then uses the same threads. A value the user has set is kept; larger
    CPUs keep TensorFlow's own choice, which is not measured here."""
    if one_thread_per_op and len(os.sched_getaffinity(0)) <= SMALL_CPU_CORES:
        os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
