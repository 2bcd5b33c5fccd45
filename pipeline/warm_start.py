"""The starting model of `ctdenoise run --warm-start PATH`, kept as a model artifact of the run.

PATH may be a SavedModel folder (a pushed version, a base model) or a Trainer's model
folder (its SavedModel under Format-Serving). Its SavedModel is copied, once per content,
under the pipeline root, and the pipeline imports that copy: the starting model of every
run stays readable where ML Metadata says it was, whatever later happens to PATH, and the
same content is always the same artifact (docs/design.md, "Warm start").
"""

from __future__ import annotations

import hashlib

from tfx.utils import path_utils

from ctdenoise.metadata.names import warm_start_dir
from ctdenoise.storage import files

SAVED_MODEL_FILE = "saved_model.pb"


def saved_model_dir(path: str) -> str:
    """The SavedModel folder PATH names: PATH itself or its Format-Serving folder; ValueError
    in one line when it holds neither."""
    for candidate in (path, path_utils.serving_model_dir(path)):
        if files.exists(files.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    raise ValueError(f"--warm-start {path}: no SavedModel there (no {SAVED_MODEL_FILE}, nor one under Format-Serving)")


def stage(path: str, pipeline_root: str) -> str:
    """The model artifact folder holding a copy of the SavedModel that PATH names, under
    `pipeline_root`, named by its content; copied only when not there already."""
    source = saved_model_dir(path)
    target = files.join(warm_start_dir(pipeline_root), _digest(source))
    serving = path_utils.serving_model_dir(target)
    if not files.exists(files.join(serving, SAVED_MODEL_FILE)):
        files.copy_tree(source, serving, last=SAVED_MODEL_FILE)  # saved_model.pb last: its presence means whole
    return target


def _digest(folder: str) -> str:
    """The first 16 hex digits of a SHA-256 of every file's relative path and bytes."""
    digest = hashlib.sha256()
    for rel in files.list_tree(folder).files:
        digest.update(rel.encode() + b"\0")
        digest.update(files.read_bytes(files.join(folder, rel)))
    return digest.hexdigest()[:16]
