"""Start training from an exported model's generator (`ctdenoise run --warm-start`).

An exported SavedModel (`export.export_generator`) keeps its generator's weights under the
module's ``generator`` attribute, so `tf.train.Checkpoint(generator=...)` reads them back into
a freshly built generator of the same architecture. Only the generator starts warm:
optimizers, discriminators and a cycle model's second generator start as they would from
scratch (docs/design.md, "Warm start").

The two generators must match variable for variable, shape for shape; anything else is
refused in one line that names both models, before a step is trained.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from ctdenoise.contract.names import MODEL_NAME_VARIABLE
from ctdenoise.storage import files

_VARIABLES = "variables/variables"
"""The SavedModel's checkpoint prefix, relative to its folder."""
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"
_GENERATOR = "generator/"


class WarmStartError(ValueError):
    """The starting model cannot seed this run's generator; the message says why, in one line."""


def saved_model_name(saved_model_dir: str) -> str:
    """The model name an exported SavedModel records for itself ("unnamed" for one that does not)."""
    try:
        value = tf.train.load_variable(_prefix(saved_model_dir), MODEL_NAME_VARIABLE + _VALUE)
    except (tf.errors.NotFoundError, ValueError):
        return "unnamed"
    return value.decode() if isinstance(value, bytes) else str(value)


def warm_start(generator: keras.Model, saved_model_dir: str, model: str) -> str:
    """Load the weights of the exported generator in `saved_model_dir` into `generator` (this
    run's, of model `model`) and return the starting model's name; `WarmStartError` when the
    folder holds no exported generator or one of another architecture."""
    prefix = _prefix(saved_model_dir)
    if not files.exists(prefix + ".index"):
        raise WarmStartError(f"cannot warm-start from {saved_model_dir}: no SavedModel variables there")
    start = saved_model_name(saved_model_dir)
    mismatch = _shape_mismatch(_generator_shapes(prefix), [v.shape.as_list() for v in generator.variables])
    if mismatch:
        raise WarmStartError(f"cannot warm-start {model} from {start} ({saved_model_dir}): {mismatch}")
    try:
        status = tf.train.Checkpoint(generator=generator).read(files.tf_path(prefix))
        status.expect_partial()  # the module's description variables are not the generator's
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise WarmStartError(f"cannot warm-start {model} from {start} ({saved_model_dir}): {first}") from None
    return start


def _prefix(saved_model_dir: str) -> str:
    return files.tf_path(files.join(saved_model_dir, _VARIABLES))


def _generator_shapes(prefix: str) -> list[list[int]]:
    return [
        shape
        for name, shape in tf.train.list_variables(prefix)
        if name.startswith(_GENERATOR) and name.endswith(_VALUE)
    ]


def _shape_mismatch(saved: list[list[int]], ours: list[list[int]]) -> str:
    """Empty when both generators have the same variable shapes, else what differs."""
    if sorted(saved) == sorted(ours):
        return ""
    weights = sum(math.prod(shape) for shape in saved), sum(math.prod(shape) for shape in ours)
    return (
        f"its generator has {len(saved)} variables ({weights[0]:,} weights), "
        f"this run's has {len(ours)} ({weights[1]:,}): a different architecture"
    )
