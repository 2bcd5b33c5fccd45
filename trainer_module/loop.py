"""The resumable training loop: restore, train to the last step, guard against divergence,
log to TensorBoard, checkpoint, report progress.

Under a multi-worker strategy every worker runs this same loop, step for step: the train
step, the summaries (the generator's inference reads BatchNorm statistics, averaged across
workers) and checkpoint saving all take part in collectives that wait for every worker.
Only the folders differ (trainer_module/run.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import tensorflow as tf

from ctdenoise.trainer_module.models.base import DenoisingModel
from ctdenoise.trainer_module.strategy import worker_count
from ctdenoise.trainer_module.summaries import EvalPairs, write_summaries


class NonFiniteLossError(FloatingPointError):
    """Training diverged; raised before anything is saved so no NaN model is kept."""


def fit(
    model: DenoisingModel,
    batches: tf.data.Dataset,
    checkpoint_dir: str | Path,
    log_dir: str | Path,
    eval_pairs: EvalPairs | None = None,
    progress: Callable[[str], None] = print,
) -> dict:
    """Train `model` to its `hp.total_steps`, resuming from the latest checkpoint in `checkpoint_dir`.

    `batches` yields (LDCT, NDCT) pairs of patch batches, float32 in [-1, 1], each shaped
    [hp.batch, hp.patch, hp.patch, 1]; it is repeated here. Each batch is global: the
    strategy splits it over its replicas, and every worker must build the same stream.
    `eval_pairs` is (ldct, ndct), whole slices [n, H, W, 1] in [-1, 1], for the PSNR and
    image summaries.

    Returns {"steps", "seconds", "steps_per_second", "losses": {...}, "checkpoint"} plus, when
    `eval_pairs` is given, "psnr": {"ldct_vs_ndct", "denoised_vs_ndct"} at the end and
    "validation": the curve [{"step", "seconds", "body_rmse_hu"}] of the denoised eval slices'
    in-body RMSE at every summary, "seconds" counted from this run's start (training time to a
    quality reads from it).
    """
    hp = model.hp
    manager = tf.train.CheckpointManager(model.checkpoint(), str(checkpoint_dir), max_to_keep=3)
    if manager.latest_checkpoint:
        manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        progress(f"resumed from {manager.latest_checkpoint} at step {model.completed_steps}")
    _check_workers_start_together(model)
    batches = iter(model.strategy.experimental_distribute_dataset(_split_by_batch(batches.repeat())))
    writer = tf.summary.create_file_writer(str(log_dir))
    step = first_step = model.completed_steps
    losses: dict[str, float] = {}
    psnr: dict[str, float] = {}
    curve: list[dict[str, float]] = []
    started = time.perf_counter()
    throughput = _Throughput(step)
    with writer.as_default():
        while step < hp.total_steps:
            a, b = _next_batch(batches)
            losses = {name: float(value) for name, value in model.train_step(a, b).items()}
            step = model.completed_steps
            _check_finite(losses, step)
            last = step == hp.total_steps
            if step % hp.summary_every == 0 or last:
                scores = write_summaries(model, losses, step, eval_pairs)
                if scores:
                    psnr = scores["psnr"]
                    seconds, rmse = round(time.perf_counter() - started, 1), scores["body_rmse_hu"]["denoised_vs_ndct"]
                    curve.append({"step": step, "seconds": seconds, "body_rmse_hu": rmse})
            if step % hp.checkpoint_every == 0 or last:
                manager.save(checkpoint_number=step)
            if step % hp.log_every == 0 or last:
                progress(_progress_line(model, step, throughput.read(step), losses))
            if step == first_step + 1:  # leave the first step's tracing out of the rate
                throughput.restart(step)
    seconds = time.perf_counter() - started
    result = {
        "steps": step,
        "seconds": seconds,
        "steps_per_second": (step - first_step) / seconds if step > first_step else 0.0,
        "losses": losses,
        "checkpoint": manager.latest_checkpoint,
    }
    if psnr:
        result["psnr"] = psnr
        result["validation"] = curve
    return result


class _Throughput:
    """Steps per second since the previous reading."""

    def __init__(self, step: int):
        self.restart(step)

    def restart(self, step: int) -> None:
        self.step, self.time = step, time.perf_counter()

    def read(self, step: int) -> float:
        rate = (step - self.step) / (time.perf_counter() - self.time)
        self.restart(step)
        return rate


def _split_by_batch(batches: tf.data.Dataset) -> tf.data.Dataset:
    """Every worker reads all files and builds the same seeded stream; the strategy then cuts
    each global batch into per-replica slices and hands each worker its own. (The default
    policy would give each worker its own files instead: a different stream per worker, and
    an error when there are fewer files than workers.) One worker alone: no effect."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return batches.with_options(options)


def _check_workers_start_together(model: DenoisingModel) -> None:
    """Workers that restored different steps would run different numbers of steps and the
    first to stop would leave the others waiting in a collective forever. One all-reduce of
    (step, step²) tells every worker alike whether they agree: n·Σstep² = (Σstep)² only when
    all steps are equal."""
    strategy = model.strategy
    if worker_count(strategy) < 2:
        return
    step = float(model.completed_steps)
    mine = strategy.experimental_distribute_values_from_function(lambda _: tf.constant([step, step * step], tf.float64))
    total, squares = strategy.reduce(tf.distribute.ReduceOp.SUM, mine, axis=None).numpy()
    replicas = strategy.num_replicas_in_sync
    if total * total != replicas * squares:
        raise RuntimeError(
            f"workers resumed at different steps (this one at {step:.0f}, mean "
            f"{total / replicas:g}): their checkpoint folders differ"
        )


def _next_batch(batches: Iterator) -> tuple:
    try:
        return next(batches)
    except StopIteration:
        raise ValueError("training data is empty: a dataset yielded no batch") from None


def _check_finite(losses: dict[str, float], step: int) -> None:
    for name, value in losses.items():
        if not math.isfinite(value):
            raise NonFiniteLossError(f"non-finite loss {name!r} at step {step}")


def _progress_line(model: DenoisingModel, step: int, steps_per_second: float, losses: dict[str, float]) -> str:
    """Step, rate, time left, the model's headline loss terms and its discriminators' accuracy."""
    total = model.hp.total_steps
    eta = (total - step) / steps_per_second if steps_per_second > 0 else float("inf")
    terms = "  ".join(f"{name} {losses[name]:.4f}" for name in model.PROGRESS_TERMS)
    line = f"step {step}/{total}  {steps_per_second:.2f} steps/s  ETA {_duration(eta)}  {terms}"
    if model.JUDGES:
        line += "  D accuracy " + "/".join(f"{losses[f'{name}/accuracy']:.2f}" for name in model.JUDGES)
    return line


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"
