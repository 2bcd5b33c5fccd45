"""The model family, one folder per model, and the one way to choose among them.

Each folder holds one model's networks, losses and step behind `base.DenoisingModel`:
`cycle_identity` (the paper's, the default), `cyclegan`, `red_cnn`, `wgan_vgg`. A model is chosen by one
hyperparameter, `model`; `configure` refuses, in one line, a hyperparameter the chosen model
does not read (docs/design.md, "The model family").
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import tensorflow as tf

from ctdenoise import tensorflow_env
from ctdenoise.trainer_module import hparams as hparams_lib
from ctdenoise.trainer_module.hparams import SHARED_HPARAMS, HParams
from ctdenoise.trainer_module.models.base import DenoisingModel
from ctdenoise.trainer_module.models.cycle_identity.model import CycleIdentityGAN
from ctdenoise.trainer_module.models.cyclegan.model import CycleGAN
from ctdenoise.trainer_module.models.red_cnn.model import RedCNN
from ctdenoise.trainer_module.models.wgan_vgg.model import WganVgg

MODELS: dict[str, type[DenoisingModel]] = {model.NAME: model for model in (CycleIdentityGAN, CycleGAN, RedCNN, WganVgg)}


def model_class(name: str) -> type[DenoisingModel]:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


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
    return hp.paired if paired is None else paired


def configure(preset_name: str, overrides: Iterable[str] = ()) -> HParams:
    """The preset with `key=value` overrides, refused in one line when an override names a
    hyperparameter the chosen model does not read (a preset may set keys for several models).
    The keys are checked before the values, whose checks may assume the key applies."""
    overrides = list(overrides)
    chosen = hparams_lib.with_overrides(
        hparams_lib.preset(preset_name), [item for item in overrides if hparams_lib.override_key(item) == "model"]
    )
    model = model_class(chosen.model)
    for item in overrides:
        key = hparams_lib.override_key(item)
        users = [name for name, other in MODELS.items() if key in other.HPARAMS]
        if key not in SHARED_HPARAMS | model.HPARAMS and users:
            raise ValueError(
                f"hyperparameter {key!r} does not apply to model {chosen.model!r} (it is read by {', '.join(users)})"
            )
    return hparams_lib.with_overrides(chosen, overrides)


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
    model = model_class(hp.model)
    weights, activations = model.weights_and_activations(hp)
    if weights + activations > memory:
        sizes = ", ".join(
            f"{key}={getattr(hp, key)}" for key in _SIZES + ("batch", "patch") if key in SHARED_HPARAMS | model.HPARAMS
        )
        raise ValueError(
            f"model {hp.model}: {sizes}: training needs at least "
            f"{_gib(weights + activations)} of memory (networks with Adam state {_gib(weights)}, "
            f"activations {_gib(activations)}), more than this machine's {_gib(memory)}"
        )


_SIZES = (
    "ngf",
    "nglf",
    "ndf",
    "pool_size",
    "red_channels",
    "red_kernel",
    "wgan_channels",
    "critic_channels",
    "critic_dense",
)
"""The hyperparameters that size a model, named in check_memory's refusal."""


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"
