"""The contract's formulas: the NumPy and TensorFlow versions of each agree."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ctdenoise.app.display import window_uint8
from ctdenoise.contract.hu import HU_MAX, HU_MIN, denormalize_hu, normalize_hu
from ctdenoise.trainer_module.data import denormalize, soft_tissue_window
from ctdenoise.trainer_module.data import normalize_hu as normalize_hu_tf

HU = np.array([-3024, -1024, -1000, -160, 40, 240, 1000, 2000, 3071], np.float32)


def test_normalisation_is_the_same_in_numpy_and_tensorflow():
    np.testing.assert_allclose(normalize_hu(HU), normalize_hu_tf(tf.constant(HU)).numpy(), atol=1e-6)
    unit = np.linspace(-1, 1, 7, dtype=np.float32)
    np.testing.assert_allclose(denormalize_hu(unit), denormalize(tf.constant(unit)).numpy(), atol=1e-3)  # float32 HU
    np.testing.assert_allclose(normalize_hu(np.array([HU_MIN, HU_MAX])), [-1.0, 1.0])


def test_soft_tissue_window_is_the_same_for_previews_and_tensorboard():
    grey = soft_tissue_window(normalize_hu_tf(tf.constant(HU))).numpy()
    np.testing.assert_array_equal(window_uint8(np.clip(HU, HU_MIN, HU_MAX)), np.rint(grey * 255).astype(np.uint8))
    assert window_uint8(np.array([-160.0, 240.0])).tolist() == [0, 255]


_CONVOLVE = (
    "from ctdenoise import tensorflow_env; {before}import tensorflow as tf; "
    "x = tf.ones([1, 8, 8, 4]); w = tf.ones([3, 3, 4, 4]); "
    "print(float(tf.function(lambda: tf.reduce_sum(tf.nn.conv2d(x, w, 1, 'SAME')))()))"
)


def _convolve(before: str = "", **variables: str) -> str:
    """What a fresh interpreter that imports the contract's environment (then runs `before`)
    prints, oneDNN's log included, when it runs one convolution in a tf.function."""
    import os
    import subprocess
    import sys

    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS")
    }
    result = subprocess.run(
        [sys.executable, "-c", _CONVOLVE.format(before=before)],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "3", **variables},
    )
    return result.stdout


def test_every_entry_points_tensorflow_runs_convolutions_on_onednn_and_a_users_choice_is_kept():
    """TensorFlow's own default leaves oneDNN off on CPUs without AVX-512 VNNI/BF16/AMX, where
    the training step then runs at half speed (docs/design.md, "What TensorFlow reads at import: Keras 2 and
    oneDNN")."""
    assert ",convolution," in _convolve()
    assert ",convolution," not in _convolve(TF_ENABLE_ONEDNN_OPTS="0")


def test_training_on_a_small_cpu_runs_each_op_on_one_thread_where_the_model_asks_and_a_users_choice_is_kept():
    """The thread rule is set after the model is chosen: choosing it must run no op, or
    TensorFlow would have made its thread pools already."""
    import os

    from ctdenoise.tensorflow_env import SMALL_CPU_CORES

    cores = len(os.sched_getaffinity(0))
    one = 1 if cores <= SMALL_CPU_CORES else cores

    def training(model: str) -> str:
        return (
            "from ctdenoise.trainer_module.models import configure, set_training_threads; "
            f"set_training_threads(configure('cpu-demo', ['model={model}'])); "
        )

    assert f"nthr:{one}" in _convolve(training("cycle_identity"))
    assert f"nthr:{cores}" in _convolve(training("red_cnn"))  # one network: TensorFlow's threads
    assert f"nthr:{cores}" in _convolve()  # inference-only commands keep TensorFlow's threads
    assert f"nthr:{cores}" in _convolve(training("cycle_identity"), TF_NUM_INTRAOP_THREADS=str(cores))


def test_protobuf_runs_its_c_implementation():
    """Every tf.Example, TFMA metric and ML Metadata call goes through protobuf; the lock pins the
    version whose C (upb) implementation installs on Python 3.11 (docs/design.md, "Reference machine, TFX version
    and pins"), and a
    re-resolved lock that fell back to pure Python would only show as a slower suite."""
    from google.protobuf.internal import api_implementation

    assert api_implementation.Type() == "upb"
