"""The contract's formulas: the NumPy and TensorFlow versions of each agree."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from contract.hu import HU_MAX, HU_MIN, denormalize_hu, normalize_hu, soft_tissue_uint8
from trainer_module.data import denormalize
from trainer_module.data import normalize_hu as normalize_hu_tf
from trainer_module.data import soft_tissue_window

HU = np.array([-3024, -1024, -1000, -160, 40, 240, 1000, 2000, 3071], np.float32)


def test_normalisation_is_the_same_in_numpy_and_tensorflow():
    np.testing.assert_allclose(normalize_hu(HU), normalize_hu_tf(tf.constant(HU)).numpy(), atol=1e-6)
    unit = np.linspace(-1, 1, 7, dtype=np.float32)
    np.testing.assert_allclose(denormalize_hu(unit), denormalize(tf.constant(unit)).numpy(), atol=1e-3)  # float32 HU
    np.testing.assert_allclose(normalize_hu([HU_MIN, HU_MAX]), [-1.0, 1.0])


def test_soft_tissue_window_is_the_same_for_previews_and_tensorboard():
    grey = soft_tissue_window(normalize_hu_tf(tf.constant(HU))).numpy()
    np.testing.assert_array_equal(soft_tissue_uint8(np.clip(HU, HU_MIN, HU_MAX)), np.rint(grey * 255).astype(np.uint8))
    assert soft_tissue_uint8(np.array([-160.0, 240.0])).tolist() == [0, 255]
