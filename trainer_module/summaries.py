"""What training shows in TensorBoard: every loss term, the learning rate, PSNR on whole eval
slices and LDCT | denoised | NDCT images in the soft-tissue window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from ctdenoise.contract.hu import DATA_RANGE
from ctdenoise.trainer_module.data import image_of, soft_tissue_window
from ctdenoise.trainer_module.models.base import DenoisingModel

EvalPairs = tuple[np.ndarray, np.ndarray]
"""(LDCT, NDCT) whole slices in [-1, 1]: the LDCT with its level map [n, H, W, CHANNELS], the
NDCT image [n, H, W, 1] (`data.paired_eval_slices`)."""


def write_summaries(
    model: DenoisingModel, losses: dict[str, float], step: int, eval_pairs: EvalPairs | None
) -> dict[str, float]:
    """Scalars for every loss term, the discriminators' judgement (`d_a/accuracy`, ...) and
    the learning rate; with `eval_pairs`, PSNR and LDCT | denoised | NDCT images. Returns the
    PSNR values written."""
    for name, value in losses.items():
        tf.summary.scalar(name if name == "lr" or "/" in name else f"loss/{name}", value, step=step)
    if eval_pairs is None:
        return {}
    ldct, ndct = (tf.constant(x, tf.float32) for x in eval_pairs)
    denoised = model.denoise(ldct)
    ldct = image_of(ldct)
    psnr = {
        "ldct_vs_ndct": mean_psnr(ldct, ndct),
        "denoised_vs_ndct": mean_psnr(denoised, ndct),
    }
    for name, value in psnr.items():
        tf.summary.scalar(f"psnr/{name}", value, step=step)
    side_by_side = tf.concat([ldct, denoised, ndct], axis=2)
    tf.summary.image("images/ldct_denoised_ndct", soft_tissue_window(side_by_side), step=step, max_outputs=3)
    return psnr


def log_exported_psnr(model: DenoisingModel, eval_pairs: EvalPairs, log_dir: str | Path) -> float:
    """PSNR of the generator as exported (after BN re-estimation) on the eval slices, also
    written to TensorBoard as psnr/exported_vs_ndct at the final step."""
    ldct, ndct = (tf.constant(x, tf.float32) for x in eval_pairs)
    value = mean_psnr(model.denoise(ldct), ndct)  # ldct: the image and its level map
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        tf.summary.scalar("psnr/exported_vs_ndct", value, step=model.completed_steps)
    return value


def mean_psnr(x: tf.Tensor, reference: tf.Tensor) -> float:
    """PSNR on normalised images (data range 2), as the original evaluated."""
    return float(tf.reduce_mean(tf.image.psnr(x, reference, max_val=DATA_RANGE)))
