"""Start training from an exported model's generators (`ctdenoise run --warm-start`).

An exported SavedModel (`export.export_generator`) keeps its generator's weights under the
module's GENERATOR attribute and, for a model with an NDCT → LDCT generator (a CycleGAN's F),
that one's under REVERSE, so `tf.train.Checkpoint` reads them back into freshly built
networks of the same architecture. Only generators start warm: optimizers and discriminators
start as they would from scratch, and so does a reverse generator that the starting model
did not export (docs/design.md, "Warm start").

Each generator must match its exported counterpart variable for variable, shape for shape;
anything else is refused in one line that names both models, before a step is trained.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tf_keras as keras

from ctdenoise.contract.names import MODEL_NAME_VARIABLE
from ctdenoise.storage import files
from ctdenoise.trainer_module.export import GENERATOR, REVERSE

_VARIABLES = "variables/variables"
"""The SavedModel's checkpoint prefix, relative to its folder."""
_VALUE = "/.ATTRIBUTES/VARIABLE_VALUE"


class WarmStartError(ValueError):
    """The starting model cannot seed this run's generator; the message says why, in one line."""


def saved_model_name(saved_model_dir: str) -> str:
    """The model name an exported SavedModel records for itself ("unnamed" for one that does not)."""
    try:
        value = tf.train.load_variable(_prefix(saved_model_dir), MODEL_NAME_VARIABLE + _VALUE)
    except (tf.errors.NotFoundError, ValueError):
        return "unnamed"
    return value.decode() if isinstance(value, bytes) else str(value)


def warm_start(
    generator: keras.Model, saved_model_dir: str, model: str, reverse: keras.Model | None = None
) -> tuple[str, list[str]]:
    """Load the exported weights in `saved_model_dir` into this run's `generator` (of model
    `model`) and into its `reverse` generator where both have one. Returns the starting model's
    name and the attributes that started warm; `WarmStartError` when the folder holds no
    exported generator or one of another architecture."""
    prefix = _prefix(saved_model_dir)
    if not files.exists(prefix + ".index"):
        raise WarmStartError(f"cannot warm-start {model} from {saved_model_dir}: no SavedModel variables there")
    start = saved_model_name(saved_model_dir)
    saved = tf.train.list_variables(prefix)
    networks = {GENERATOR: generator}
    if reverse is not None and _shapes(saved, REVERSE):
        networks[REVERSE] = reverse
    for name, network in networks.items():
        mismatch = _shape_mismatch(_shapes(saved, name), [v.shape.as_list() for v in network.variables])
        if mismatch:
            raise WarmStartError(f"cannot warm-start {model} from {start} ({saved_model_dir}): {name} {mismatch}")
    try:
        status = tf.train.Checkpoint(**networks).read(files.tf_path(prefix))
        status.expect_partial()  # the module's description variables are not the generators'
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise WarmStartError(f"cannot warm-start {model} from {start} ({saved_model_dir}): {first}") from None
    return start, list(networks)


def _prefix(saved_model_dir: str) -> str:
    return files.tf_path(files.join(saved_model_dir, _VARIABLES))


def _shapes(saved: list[tuple[str, list[int]]], attribute: str) -> list[list[int]]:
    """The variable shapes the checkpoint holds under the module's `attribute`."""
    return [shape for name, shape in saved if name.startswith(attribute + "/") and name.endswith(_VALUE)]


def _shape_mismatch(saved: list[list[int]], ours: list[list[int]]) -> str:
    """Empty when both networks have the same variable shapes, else what differs."""
    if sorted(saved) == sorted(ours):
        return ""
    weights = sum(math.prod(shape) for shape in saved), sum(math.prod(shape) for shape in ours)
    return (
        f"has {len(saved)} variables ({weights[0]:,} weights) there, "
        f"{len(ours)} ({weights[1]:,}) in this run: a different architecture"
    )
