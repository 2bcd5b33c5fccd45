"""The Trainer's `run_fn`: data → the chosen model (`hp.model`) → custom training loop → exported generator.

The Trainer's arguments mean what they say: `TrainArgs.num_steps` is the number of training
steps (it must equal the hyperparameters' epochs × steps_per_epoch, which the pipeline
derives it from) and `EvalArgs.num_steps` the number of whole eval slices shown in
TensorBoard. The outcome is written once, beside the SavedModel (`MODEL_METADATA_FILE`);
the Trainer component records it on the Model artifact from there.

Several workers (TF_CONFIG, docs/design.md, "Training mechanics") all run this same function, step for step,
because training, summaries, checkpointing, BatchNorm re-estimation and export all take part
in collectives that wait for every worker. Only where they write differs: the chief writes
the run's checkpoints, TensorBoard logs, SavedModel and metadata; every other worker writes
its copies into a private temporary folder that it deletes at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import tensorflow as tf

import ctdenoise.tensorflow_env  # noqa: F401  (before tf.keras is first touched)
from ctdenoise.contract.names import TENSORBOARD_DIR, split_dir
from ctdenoise.storage import files
from ctdenoise.trainer_module import hparams as hparams_lib
from ctdenoise.trainer_module.data import (
    paired_eval_slices,
    paired_patch_batches,
    paired_slices,
    patch_batches,
    smallest_side,
)
from ctdenoise.trainer_module.export import Description, export_generator, reestimate_batch_norm
from ctdenoise.trainer_module.hparams import HParams
from ctdenoise.trainer_module.loop import fit
from ctdenoise.trainer_module.models import build, from_dict, uses_pairs
from ctdenoise.trainer_module.models.base import DenoisingModel
from ctdenoise.trainer_module.resume import CHECKPOINTS, prepare_checkpoint_dir, resume_key
from ctdenoise.trainer_module.strategy import Worker, make_strategy, this_worker
from ctdenoise.trainer_module.summaries import log_exported_psnr
from ctdenoise.trainer_module.warm_start import warm_start

HPARAMS_KEY = "hparams"
"""Key of the hyperparameter dict in the Trainer's custom_config."""


def fn_args(
    examples: str,
    model_run_dir: str,
    serving_model_dir: str,
    hp: HParams,
    eval_slices: int = hparams_lib.TENSORBOARD_EVAL_SLICES,
    base_model: str | None = None,
) -> SimpleNamespace:
    """The arguments TFX's Trainer would give `run_fn` for this Examples artifact (and starting
    SavedModel), for callers outside the pipeline (the multi-worker worker, benchmarks, tests)."""
    return SimpleNamespace(
        base_model=base_model,
        train_files=[split_dir(examples, "train") + "/*.gz"],
        eval_files=[split_dir(examples, "eval") + "/*.gz"],
        model_run_dir=model_run_dir,
        serving_model_dir=serving_model_dir,
        train_steps=hp.total_steps,
        eval_steps=eval_slices,
        custom_config={HPARAMS_KEY: hparams_lib.to_dict(hp)},
    )


def run_fn(fn_args) -> DenoisingModel:
    """TFX Trainer entry point (GenericExecutor), and every worker's in a multi-worker job.
    Returns the trained model (TFX ignores it; tests read it)."""
    hp = from_dict(fn_args.custom_config[HPARAMS_KEY])
    if fn_args.train_steps != hp.total_steps:
        raise ValueError(
            f"TrainArgs.num_steps {fn_args.train_steps} differs from the hyperparameters' "
            f"{hp.total_steps} steps (epochs × steps_per_epoch)"
        )
    strategy = make_strategy()  # first: a multi-worker strategy must precede TensorFlow's start-up
    _check_patch_fits(fn_args.train_files, hp.patch)
    _check_pairs(fn_args.train_files, hp)
    tf.random.set_seed(hp.seed)
    progress = _progress_printer()
    worker = this_worker()
    start = fn_args.base_model  # TFX's FnArgs, or `fn_args` above: None without a warm start
    key = resume_key(fn_args.train_files, hparams_lib.to_dict(hp), start)
    with _worker_outputs(fn_args, worker, key, progress) as out:
        eval_pairs = paired_eval_slices(fn_args.eval_files, fn_args.eval_steps)
        model = build(hp, strategy)
        if start:  # before fit, whose resume from a checkpoint of this run overrides it
            name, warm = warm_start(model.generator, start, hp.model, model.reverse_generator)
            progress(f"warm start: {' and '.join(warm)} from {name} ({start})")
        has_eval = len(eval_pairs[0]) > 0
        result = fit(
            model,
            training_batches(fn_args.train_files, hp),
            out.checkpoints,
            out.tensorboard,
            eval_pairs if has_eval else None,
            progress,
        )
        if hp.bn_reestimation_batches:  # every worker, on the same batches: the statistics are averaged
            calibration = patch_batches(
                fn_args.train_files, "ldct", hp.patch, hp.batch, seed=2 * hp.seed + 2, **_foreground(hp)
            )
            reestimate_batch_norm(model.generator, iter(calibration), hp.bn_reestimation_batches)
        if has_eval:
            result.setdefault("psnr", {})["exported_vs_ndct"] = log_exported_psnr(model, eval_pairs, out.tensorboard)
        result["tensorboard_dir"] = files.tf_path(files.join(fn_args.model_run_dir, TENSORBOARD_DIR))
        metadata = {"hparams": hparams_lib.to_dict(hp), "train": _jsonable(result), "warm_start": start}
        export_generator(
            model.generator,
            Description.of(model),
            out.model,
            metadata if worker.is_chief else None,
            model.reverse_generator,
        )
    return model


@dataclass(frozen=True)
class WorkerOutputs:
    """Where one worker writes its checkpoints, TensorBoard events and SavedModel."""

    checkpoints: str
    tensorboard: str
    model: str


@contextlib.contextmanager
def _worker_outputs(fn_args, worker: Worker, key: str, progress: Callable[[str], None]) -> Iterator[WorkerOutputs]:
    """The chief's are the run's own folders. Any other worker gets a private temporary
    folder (local to its machine, seeded from the checkpoint the chief resumes from), which is
    deleted when training ends, whether it succeeded or not."""
    if worker.is_chief:
        yield WorkerOutputs(
            prepare_checkpoint_dir(fn_args.model_run_dir, key, progress),
            files.tf_path(files.join(fn_args.model_run_dir, TENSORBOARD_DIR)),
            fn_args.serving_model_dir,
        )
        return
    scratch = tempfile.mkdtemp(prefix=f"ctdenoise-{worker.name}-")
    try:
        yield WorkerOutputs(
            prepare_checkpoint_dir(fn_args.model_run_dir, key, progress, private=os.path.join(scratch, CHECKPOINTS)),
            os.path.join(scratch, TENSORBOARD_DIR),
            os.path.join(scratch, "model"),
        )
    finally:
        files.remove_tree(scratch)


def _check_patch_fits(train_files: list[str], patch: int) -> None:
    """Fail before any model is built when a patch cannot be cut from every training slice."""
    side = smallest_side(train_files)
    if side is None:
        raise ValueError("no training examples: the train split is empty")
    if patch > side:
        raise ValueError(
            f"patch {patch} is larger than the smallest training slice side ({side} px); "
            f"choose --set patch={min(side, 56)} or less"
        )


def _check_pairs(train_files: list[str], hp: HParams) -> None:
    """Fail before any model is built when a model that trains on pairs has none: the data may
    hold both doses of a patient at positions that never match (the ingest report counts the
    pairs)."""
    if uses_pairs(hp) and not any(True for _ in paired_slices(train_files).take(1)):
        raise ValueError(
            f"model {hp.model} trains on co-located LDCT/NDCT pairs, and the train split holds none "
            "(the ingest report counts the pairs)"
        )


def training_batches(train_files: list[str], hp: HParams) -> tf.data.Dataset:
    """(LDCT, NDCT) patch batches: two independent streams (unpaired, the paper), or
    co-located crops of slice pairs for a paired model or `hp.paired`, their noise redrawn with
    `hp.noise_rescale`; turned at random with `hp.augment`."""
    if uses_pairs(hp):
        return paired_patch_batches(
            train_files,
            hp.patch,
            hp.batch,
            seed=2 * hp.seed,
            augment=hp.augment,
            noise_rescale=hp.noise_rescale,
            **_foreground(hp),
        )
    ldct = patch_batches(
        train_files, "ldct", hp.patch, hp.batch, seed=2 * hp.seed, augment=hp.augment, **_foreground(hp)
    )
    ndct = patch_batches(
        train_files, "ndct", hp.patch, hp.batch, seed=2 * hp.seed + 1, augment=hp.augment, **_foreground(hp)
    )
    return tf.data.Dataset.zip((ldct, ndct))


def _foreground(hp: HParams) -> dict[str, Any]:
    """The patch samplers' foreground arguments, from the hyperparameters."""
    return {"foreground_patches": hp.foreground_patches, "foreground_hu": hp.foreground_hu}


def _progress_printer():
    def progress(line: str) -> None:
        print(f"[train] {line}", flush=True)

    return progress


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(result, default=float))
