"""The model family, one folder per model, and the one way to choose among them and configure one.

Each folder holds one model: its networks, losses and step behind `base.DenoisingModel`, and its
hyperparameters (`params.Params`, extending the shared `HParams`) with their preset sizes. Its
`__init__` names the model class as `MODEL`. The registry finds the folders here by themselves
(`cycle_identity`, the paper's and the default; `cyclegan`, `red_cnn`, `wgan_vgg`) and models
installed by other distributions under the `ctdenoise.models` entry-point group, so adding a model
edits nothing outside its folder (docs/design.md, "Adding a model").

A model is chosen by one hyperparameter, `model`; `configure` turns a preset and `key=value`
overrides into that model's `Params`, refusing in one line a key the chosen model does not read.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any, overload

import tensorflow as tf

from ctdenoise import tensorflow_env
from ctdenoise.trainer_module import hparams as hparams_lib
from ctdenoise.trainer_module.hparams import DEFAULT_MODEL, HParams
from ctdenoise.trainer_module.models.base import DenoisingModel, P

ENTRY_POINT_GROUP = "ctdenoise.models"
"""Where another distribution declares its models: `name = package:MODEL_CLASS`."""


def _name(params: type[HParams]) -> str:
    """The model whose `Params` class this is: the default of its `model` field."""
    return str(params.__dataclass_fields__["model"].default)


def _discover() -> dict[str, type[DenoisingModel]]:
    """The models in this package's folders, then those of the entry-point group, by name."""
    found: list[type[DenoisingModel]] = []
    for info in sorted(pkgutil.iter_modules(__path__, f"{__name__}."), key=lambda info: info.name):
        if info.ispkg:
            module = importlib.import_module(info.name)
            if not hasattr(module, "MODEL"):
                raise ImportError(f"{info.name} is a model folder without MODEL in its __init__")
            found.append(module.MODEL)
    for entry in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda entry: entry.name):
        found.append(entry.load())
    models: dict[str, type[DenoisingModel]] = {}
    for model in found:
        _check_declaration(model)
        if model.NAME in models:
            raise ImportError(f"two models are named {model.NAME!r}: {models[model.NAME]} and {model}")
        models[model.NAME] = model
    return models


def _check_declaration(model: type[DenoisingModel]) -> None:
    """Refuse at import a model whose declaration the registry cannot use."""
    params = getattr(model, "PARAMS", None)
    if not (isinstance(params, type) and issubclass(params, HParams)):
        raise ImportError(f"model {model!r}: PARAMS must be a dataclass extending HParams")
    if _name(params) != model.NAME:
        raise ImportError(f"model {model.NAME!r}: its Params' model default is {_name(params)!r}")
    unknown = set(params.PRESETS) - set(hparams_lib.PRESETS)
    if unknown:
        raise ImportError(f"model {model.NAME!r}: presets {sorted(unknown)} are not among {hparams_lib.PRESETS}")


MODELS: dict[str, type[DenoisingModel]] = _discover()


def model_class(name: str) -> type[DenoisingModel]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


@overload
def preset(name: str, model: str = DEFAULT_MODEL) -> HParams: ...
@overload
def preset(name: str, model: type[P]) -> P: ...
def preset(name: str, model: str | type[HParams] = DEFAULT_MODEL) -> HParams:
    """A model's hyperparameters in the named preset: the shared preset values and the model's
    own. `model` is its name, or its `Params` class where the caller reads its fields."""
    if name not in hparams_lib.SHARED_PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(hparams_lib.PRESETS)}")
    params = model_class(model if isinstance(model, str) else _name(model)).PARAMS
    if not isinstance(model, str) and params is not model:
        raise ValueError(f"{model.__name__} is not the hyperparameters of a registered model")
    return params(**{**hparams_lib.SHARED_PRESETS[name], **params.PRESETS.get(name, {})})


def configure(preset_name: str, overrides: Iterable[str] = ()) -> HParams:
    """The preset of the model that a `model=` override chooses (else the default), with the
    `key=value` overrides applied (`with_overrides`)."""
    overrides = list(overrides)
    chosen = [hparams_lib.parse_override(HParams, item)[1] for item in overrides if _key(item) == "model"]
    return with_overrides(preset(preset_name, chosen[-1] if chosen else DEFAULT_MODEL), overrides)


def with_overrides(hp: P, overrides: Iterable[str]) -> P:
    """`hp` with `key=value` overrides, each value parsed with its field's type. A key the model
    does not read is refused in one line, naming the models that read it (a preset may set keys
    for several models); keys are checked before values, whose checks may assume the key applies.
    The model stays: `configure` chooses it."""
    overrides = list(overrides)
    readable = hparams_lib.field_types(type(hp))
    for item in overrides:
        key = _key(item)
        if key not in readable:
            users = [name for name, model in MODELS.items() if key in hparams_lib.field_types(model.PARAMS)]
            if users:
                raise ValueError(
                    f"hyperparameter {key!r} does not apply to model {hp.model!r} (it is read by {', '.join(users)})"
                )
            raise ValueError(f"unknown hyperparameter {key!r}; known: {', '.join(readable)}")
    changes = dict(hparams_lib.parse_override(type(hp), item) for item in overrides)
    if changes.get("model", hp.model) != hp.model:
        raise ValueError(f"model={changes['model']} changes the model of {hp.model!r} hyperparameters: use configure")
    return _consistent(dataclasses.replace(hp, **changes))


def _consistent(hp: P) -> P:
    """`hp`, refused in one line where two of its values contradict each other; every way of making
    hyperparameters (overrides, a recorded dict) passes through here."""
    if hp.noise_rescale > 1 and not uses_pairs(hp):
        raise ValueError(
            f"noise_rescale={hp.noise_rescale:g} redraws the noise of LDCT/NDCT pairs: model {hp.model!r} "
            "trains on unpaired streams here"
        )
    return hp


def _key(item: str) -> str:
    return hparams_lib.override_key(item)


def from_dict(values: Mapping[str, Any]) -> HParams:
    """Inverse of `hparams.to_dict`; a key the model does not have is an error, so that typos and
    records of another version do not pass silently."""
    params = model_class(values.get("model", DEFAULT_MODEL)).PARAMS
    unknown = set(values) - set(hparams_lib.field_types(params))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)} for model {_name(params)!r}")
    return _consistent(params(**values))


def build(hp: HParams, strategy: tf.distribute.Strategy | None = None) -> DenoisingModel:
    """The model `hp.model` with its training state, under `strategy`."""
    return model_class(hp.model)(hp, strategy)


def set_training_threads(hp: HParams) -> None:
    """The thread rule for training `hp.model` (`ctdenoise.tensorflow_env.training_threads`);
    call it before TensorFlow runs its first op: choosing the model runs none."""
    tensorflow_env.training_threads(model_class(hp.model).ONE_THREAD_PER_OP)


def uses_pairs(hp: HParams) -> bool:
    """Whether the model trains on co-located LDCT and NDCT patches."""
    paired = model_class(hp.model).PAIRED
    return bool(getattr(hp, "paired", False)) if paired is None else paired


def preflight(hp: HParams, memory: int | None = None) -> None:
    """What the Trainer would refuse only a minute in, refused now in one line: a configuration
    larger than memory (`check_memory`), or a file the model needs (`DenoisingModel.preflight`)."""
    check_memory(hp, memory)
    model_class(hp.model).preflight(hp)


def check_memory(hp: HParams, memory: int | None = None) -> None:
    """Refuse, with the estimate, a configuration that cannot train in `memory` bytes (default:
    this machine's), before anything runs: TensorFlow would otherwise fail a minute later,
    inside the first training step, with an out-of-memory line that names no setting. The
    estimate (`DenoisingModel.weights_and_activations`) counts only what training cannot do
    without, so a configuration it refuses cannot fit."""
    memory = memory or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    weights, activations = model_class(hp.model).weights_and_activations(hp)
    if weights + activations > memory:
        sizes = ", ".join(f"{key}={getattr(hp, key)}" for key in hparams_lib.size_fields(type(hp)))
        raise ValueError(
            f"model {hp.model}: {sizes}: training needs at least "
            f"{_gib(weights + activations)} of memory (networks with Adam state {_gib(weights)}, "
            f"activations {_gib(activations)}), more than this machine's {_gib(memory)}"
        )


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"
