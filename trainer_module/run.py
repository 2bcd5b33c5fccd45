"""The Trainer's `run_fn`: data → four models → custom training loop → exported generator."""
from __future__ import annotations

import json
import os
from typing import Any

import tensorflow as tf

from trainer_module import hparams as hparams_lib
from trainer_module.data import paired_eval_slices, patch_batches
from trainer_module.export import export_generator
from trainer_module.resume import prepare_checkpoint_dir, resume_key
from trainer_module.train_loop import CycleGAN, fit, log_exported_psnr, make_strategy, reestimate_batch_norm

HPARAMS_KEY = "hparams"
"""Key of the hyperparameter dict in the Trainer's custom_config."""

RESULT_FILE = "train_result.json"
TENSORBOARD = "tensorboard"
EVAL_SLICES = 3
"""Whole eval slices shown in TensorBoard (PSNR and LDCT | denoised | NDCT images)."""


def run_fn(fn_args) -> None:
    """TFX Trainer entry point (GenericExecutor)."""
    hp = hparams_lib.from_dict(fn_args.custom_config[HPARAMS_KEY])
    tf.random.set_seed(hp.seed)
    progress = _progress_printer()
    ckpt_dir = prepare_checkpoint_dir(
        fn_args.model_run_dir, resume_key(fn_args.train_files, hparams_lib.to_dict(hp)), progress
    )
    ldct = patch_batches(fn_args.train_files, "ldct", hp.patch, hp.batch, seed=2 * hp.seed)
    ndct = patch_batches(fn_args.train_files, "ndct", hp.patch, hp.batch, seed=2 * hp.seed + 1)
    eval_pairs = paired_eval_slices(fn_args.eval_files, EVAL_SLICES)
    gan = CycleGAN(hp, make_strategy())
    log_dir = os.path.join(fn_args.model_run_dir, TENSORBOARD)
    has_eval = len(eval_pairs[0]) > 0
    result = fit(ldct, ndct, hp, ckpt_dir, log_dir, eval_pairs if has_eval else None, progress, gan)
    if hp.bn_reestimation_batches:
        calibration = patch_batches(fn_args.train_files, "ldct", hp.patch, hp.batch, seed=2 * hp.seed + 2)
        reestimate_batch_norm(gan.G, iter(calibration), hp.bn_reestimation_batches)
    if has_eval:
        result.setdefault("psnr", {})["exported_vs_ndct"] = log_exported_psnr(gan, eval_pairs, log_dir)
    result["tensorboard_dir"] = log_dir
    export_generator(gan.G, fn_args.serving_model_dir, {"hparams": hparams_lib.to_dict(hp), "train": _jsonable(result)})
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, RESULT_FILE), "w") as f:
        f.write(json.dumps(_jsonable(result), indent=1))


def _progress_printer():
    def progress(line: str) -> None:
        print(f"[train] {line}", flush=True)
    return progress


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(result, default=float))
