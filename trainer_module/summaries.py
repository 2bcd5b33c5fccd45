"""What training shows in TensorBoard: every loss term, the learning rate, PSNR and in-body RMSE
on whole eval slices and LDCT | denoised | NDCT images in the soft-tissue window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from ctdenoise.contract.hu import BODY_HU, DATA_RANGE, denormalize_hu
from ctdenoise.trainer_module.data import image_of, soft_tissue_window
from ctdenoise.trainer_module.models.base import DenoisingModel

EvalPairs = tuple[np.ndarray, np.ndarray]
"""(LDCT, NDCT) whole slices in [-1, 1]: the LDCT with its level map [n, H, W, CHANNELS], the
NDCT image [n, H, W, 1] (`data.paired_eval_slices`)."""


def write_summaries(
    model: DenoisingModel, losses: dict[str, float], step: int, eval_pairs: EvalPairs | None
) -> dict[str, dict[str, float]]:
    """Scalars for every loss term, the discriminators' judgement (`d_a/accuracy`, ...) and
    the learning rate; with `eval_pairs`, PSNR, in-body RMSE (HU, inside the NDCT's body: the
    figure the quality benchmark's time to quality reads) and LDCT | denoised | NDCT images.
    Returns {"psnr": ..., "body_rmse_hu": ...} of the values written (empty without eval pairs)."""
    for name, value in losses.items():
        tf.summary.scalar(name if name == "lr" or "/" in name else f"loss/{name}", value, step=step)
    if eval_pairs is None:
        return {}
    ldct, ndct = (tf.constant(x, tf.float32) for x in eval_pairs)
    denoised = model.denoise(ldct)
    ldct = image_of(ldct)
    scores: dict[str, dict[str, float]] = {"psnr": {}, "body_rmse_hu": {}}
    for name, image in (("ldct_vs_ndct", ldct), ("denoised_vs_ndct", denoised)):
        scores["psnr"][name] = mean_psnr(image, ndct)
        scores["body_rmse_hu"][name] = body_rmse_hu(image.numpy(), eval_pairs[1])
    for metric, values in scores.items():
        for name, value in values.items():
            tf.summary.scalar(f"{metric}/{name}", value, step=step)
    side_by_side = tf.concat([ldct, denoised, ndct], axis=2)
    tf.summary.image("images/ldct_denoised_ndct", soft_tissue_window(side_by_side), step=step, max_outputs=3)
    return scores


def body_rmse_hu(image: np.ndarray, reference: np.ndarray) -> float:
    """RMSE in HU over every slice's body (reference above BODY_HU), pooled: the Evaluator's
    in-body RMSE on normalised images (docs/design.md, "Pipeline metrics and the blessing gate")."""
    image_hu, reference_hu = denormalize_hu(image), denormalize_hu(reference)
    body = reference_hu > BODY_HU
    return float(np.sqrt(np.mean((image_hu[body] - reference_hu[body]) ** 2))) if body.any() else float("nan")


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
