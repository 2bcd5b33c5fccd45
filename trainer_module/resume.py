"""Resume a killed Trainer from its last checkpoint.

TFX gives every Trainer execution a fresh Model Run directory, so a rerun after a crash
would start from scratch. Each run records a key of its inputs (train files and
hyperparameters) beside its checkpoints; a new run with the same key copies the most
advanced sibling checkpoint into its own Model Run directory and continues from there
(same step, same optimizer state). `ctdenoise.storage.files` keeps this working on gs:// or s3://.

Under a multi-worker strategy every worker must resume from the same checkpoint, or their
collectives stop matching; a worker other than the chief seeds a private folder from the
checkpoint the chief's folder is seeded from and writes nothing under the run's directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from ctdenoise.storage import files

KEY_FILE = "resume_key.txt"
CHECKPOINTS = "checkpoints"
CHECKPOINT_STATE_FILE = "checkpoint"
"""tf.train.CheckpointManager's index of a folder's checkpoints; written last by a copy."""


def resume_key(train_files: Sequence[str], hparams: dict[str, Any], start: str | None = None) -> str:
    """Same data, same hyperparameters and the same starting model (`start`, a warm start's
    SavedModel) → same key."""
    inputs: dict[str, Any] = {"train_files": sorted(train_files), "hparams": hparams}
    if start:
        inputs["start"] = start
    text = json.dumps(inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_checkpoint_dir(
    model_run_dir: str, key: str, progress: Callable[[str], None] = print, private: str | None = None
) -> str:
    """This run's checkpoint folder, seeded from an interrupted run with the same key if any.

    A worker that is not the chief passes `private`, a folder of its own, and gets it back
    seeded from the same checkpoint as the chief's folder: the chief's own checkpoints when
    it has some (a restarted run), else the same interrupted sibling run. Copies write the
    `checkpoint` state file last, so a worker that looks while the chief is still copying
    sees no checkpoint yet and picks the same sibling.
    """
    own = files.join(model_run_dir, CHECKPOINTS)
    if private is None:
        files.makedirs(own)
        files.write_text(files.join(model_run_dir, KEY_FILE), key)
        target, source = own, None if _has_checkpoint(own) else _best_sibling(model_run_dir, key)
    else:
        files.makedirs(private)
        target, source = private, own if _has_checkpoint(own) else _best_sibling(model_run_dir, key)
    if source is not None:
        progress(f"resuming from interrupted run {source}")
        files.copy_tree(source, target, last=CHECKPOINT_STATE_FILE)
    return target


def _has_checkpoint(folder: str) -> bool:
    return tf.train.latest_checkpoint(files.tf_path(folder)) is not None


def _best_sibling(model_run_dir: str, key: str) -> str | None:
    """The checkpoint folder with the highest step among earlier runs sharing `key`."""
    parent, own = files.split(model_run_dir)
    best, best_step = None, -1
    for name in files.listdir(parent):
        run_dir = files.join(parent, name)
        key_path = files.join(run_dir, KEY_FILE)
        if name == own or not files.exists(key_path) or files.read_text(key_path).strip() != key:
            continue
        latest = tf.train.latest_checkpoint(files.tf_path(files.join(run_dir, CHECKPOINTS)))
        number = re.search(r"(\d+)$", latest) if latest else None
        step = int(number.group(1)) if number else -1
        if step > best_step:
            best, best_step = files.join(run_dir, CHECKPOINTS), step
    return best
