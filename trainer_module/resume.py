"""Resume a killed Trainer from its last checkpoint.

TFX gives every Trainer execution a fresh Model Run directory, so a rerun after a crash
would start from scratch. Each run records a key of its inputs (train files and
hyperparameters) beside its checkpoints; a new run with the same key copies the most
advanced sibling checkpoint into its own Model Run directory and continues from there
(same step, same optimizer state). tf.io.gfile keeps this working on gs:// or s3://.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Callable, Sequence

import tensorflow as tf

KEY_FILE = "resume_key.txt"
CHECKPOINTS = "checkpoints"


def resume_key(train_files: Sequence[str], hparams: dict[str, Any]) -> str:
    """Same data and same hyperparameters → same key."""
    text = json.dumps({"train_files": sorted(train_files), "hparams": hparams}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def prepare_checkpoint_dir(model_run_dir: str, key: str, progress: Callable[[str], None] = print) -> str:
    """This run's checkpoint folder, seeded from an interrupted run with the same key if any."""
    ckpt_dir = os.path.join(model_run_dir, CHECKPOINTS)
    tf.io.gfile.makedirs(ckpt_dir)
    with tf.io.gfile.GFile(os.path.join(model_run_dir, KEY_FILE), "w") as f:
        f.write(key)
    if tf.train.latest_checkpoint(ckpt_dir) is None:
        source = _best_sibling(model_run_dir, key)
        if source is not None:
            progress(f"resuming from interrupted run {source}")
            for name in tf.io.gfile.listdir(source):
                tf.io.gfile.copy(os.path.join(source, name), os.path.join(ckpt_dir, name), overwrite=True)
    return ckpt_dir


def _best_sibling(model_run_dir: str, key: str) -> str | None:
    """The checkpoint folder with the highest step among earlier runs sharing `key`."""
    parent, own = os.path.split(model_run_dir.rstrip("/"))
    best, best_step = None, -1
    for name in tf.io.gfile.listdir(parent):
        name = name.rstrip("/")
        run_dir = os.path.join(parent, name)
        key_path = os.path.join(run_dir, KEY_FILE)
        if name == own or not tf.io.gfile.exists(key_path):
            continue
        with tf.io.gfile.GFile(key_path) as f:
            if f.read().strip() != key:
                continue
        latest = tf.train.latest_checkpoint(os.path.join(run_dir, CHECKPOINTS))
        step = int(re.search(r"(\d+)$", latest).group(1)) if latest else -1
        if step > best_step:
            best, best_step = os.path.join(run_dir, CHECKPOINTS), step
    return best
