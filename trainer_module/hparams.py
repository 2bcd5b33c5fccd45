"""The hyperparameters every model shares, the presets' shared values, and `key=value` parsing.

One frozen value object (rather than loose flags) so that a run's configuration can be written
next to its model as flat JSON, read back exactly, and changed from the command line with
`key=value` overrides checked against the field types. Each model extends `HParams` with its
own dataclass in its own folder (docs/design.md, "Adding a model"); `ctdenoise.trainer_module.models`
chooses among them, so that module, not this one, turns a preset name and overrides into a
model's hyperparameters (`models.configure`).

A field declares its range with `knob` and whether it sizes the model (named in the memory
check's refusal); `HParams.__post_init__` checks every declared range, and `check` the rules
between fields.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ctdenoise.contract.hu import FOREGROUND_HU, HU_MAX, HU_MIN

DEFAULT_MODEL = "cycle_identity"
"""The product's default model: the paper's (docs/design.md, "The model family")."""
TENSORBOARD_EVAL_SLICES = 3
"""Whole eval slices the Trainer shows in TensorBoard (PSNR and LDCT | denoised | NDCT images):
the pipeline Trainer's EvalArgs.num_steps, and the default outside the pipeline."""
MIXED_PRECISION_MODES = ("auto", "on", "off")
MIN_PATCH = 24
"""Smallest patch the discriminator accepts: its output map must keep at least one pixel."""
MAX_STEPS = 10**9
"""A bound on the training length, far beyond any real run, that keeps step counts in range."""
MAX_SEED = 2**32 - 1
"""The largest seed NumPy accepts (Keras seeds NumPy, Python and TensorFlow with it)."""
FOREGROUND_SHARE = 0.75
"""`foreground_patches` in the CPU presets: one of the departures that start the adversarial game
on CT (docs/design.md, "Making the adversarial game start")."""


def knob(
    default: Any,
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    maximum: float | None = None,
    size: bool = False,
) -> Any:
    """A hyperparameter field with its allowed range (inclusive `minimum`/`maximum`, exclusive
    `above`/`below`; floats must also be finite) and whether it sizes the model."""
    bounds = {"minimum": minimum, "above": above, "below": below, "maximum": maximum}
    return dataclasses.field(
        default=default, metadata={"size": size, **{k: v for k, v in bounds.items() if v is not None}}
    )


_RANGE_WORDS = {"minimum": ">=", "above": ">", "below": "<", "maximum": "<="}
_IN_RANGE = {
    "minimum": lambda value, bound: value >= bound,
    "above": lambda value, bound: value > bound,
    "below": lambda value, bound: value < bound,
    "maximum": lambda value, bound: value <= bound,
}


@dataclass(frozen=True)
class HParams:
    """What every model reads: the data, the schedule, the seed, the strategy and export; the
    defaults are the paper configuration (docs/design.md, "The algorithm: cycle-identity CycleGAN for
    low-dose CT"). A model's dataclass adds its own fields and `PRESETS` sizes."""

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """The model's own values in named presets (`SHARED_PRESETS`' names); a preset it does not
    name leaves its fields at their defaults, the paper's sizes."""
    SHAPE_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Fields beyond the sizing ones that change what a generator's weights compute (a warm
    start must match them: `ctdenoise.app.base_models.starting_point`)."""

    model: str = DEFAULT_MODEL
    """Which model of the family to train (ctdenoise.trainer_module.models; docs/design.md, "The model family")."""

    # Data.
    patch: int = knob(56, minimum=MIN_PATCH, size=True)
    """Side of the square training patches; fixes the discriminator's input and output size (at
    least MIN_PATCH, the discriminator's five 4x4 convolutions)."""
    batch: int = knob(10, minimum=1, size=True)
    """Global batch size (split across replicas under a distribution strategy)."""
    foreground_patches: float = knob(0.0, minimum=0.0, maximum=1.0)
    """Share of training patches drawn where at least 90 % of the pixels are the patient
    (above `foreground_hu`); the others anywhere (0: all anywhere, the paper). Random
    patches of a slice are mostly air, which looks the same at both doses, so the
    discriminators cannot learn from them; the patches drawn anywhere keep the generators
    seeing air (docs/design.md, "Making the adversarial game start")."""
    foreground_hu: float = knob(FOREGROUND_HU, above=HU_MIN, below=HU_MAX)
    """The patient's line for `foreground_patches`: -900 HU counts the lungs (about -850 HU)
    as patient, the Evaluator's body line -500 HU leaves them out (a stronger game, darker
    lungs: docs/design.md, "Making the adversarial game start"). Unused while `foreground_patches` is 0."""
    augment: bool = True
    """Turn each training patch by a random flip and 90° rotation (one of the square's eight
    symmetries; both doses of a pair alike). Evaluation and BatchNorm re-estimation always
    see the slices as they are."""
    noise_rescale: float = knob(1.0, minimum=1.0, maximum=8.0)
    """Paired training only: above 1, each LDCT patch is redrawn as its NDCT plus its own noise
    times ±s, s log-uniform in [1/noise_rescale, noise_rescale], its level map following
    (`data.redraw_noise`): fresh noise realisations over a range of levels, with the scanner's
    texture. 1 trains on the LDCT as ingested."""

    # Optimisation.
    lr: float = knob(2e-4, above=0.0)
    beta1: float = knob(0.5, minimum=0.0, below=1.0)
    beta2: float = knob(0.999, minimum=0.0, below=1.0)
    epochs: int = knob(160, minimum=1)
    steps_per_epoch: int = knob(1000, minimum=1)
    """Patches are sampled at random, so an epoch is a fixed number of steps."""
    decay_start_epoch: int | None = None
    """None keeps the learning rate constant (the TF2 port); else it decays linearly to 0
    from this epoch to the last one."""
    seed: int = 0
    deterministic: bool = False
    """Bit-identical runs for one seed on one machine, at some cost in speed (Grappler's
    memory optimizer off for the train step: trainer_module/determinism.py)."""

    # Performance.
    jit_compile: bool = False
    """Compile the per-replica train step with XLA."""
    mixed_precision: str = "auto"
    """'auto': mixed_float16 when a GPU is visible; 'on': always; 'off': float32 always."""

    # Export.
    bn_reestimation_batches: int = knob(50, minimum=0)
    """Before export, re-estimate the generator's BatchNorm statistics as a plain average
    over this many batches of LDCT training patches (0: keep the moving averages). With the
    original's momentum 0.1 the moving statistics are essentially those of the last batch,
    so an unlucky final batch would otherwise skew every inference (seen: up to 14 dB)."""

    # Bookkeeping, in steps.
    checkpoint_every: int = knob(1000, minimum=1)
    summary_every: int = knob(200, minimum=1)
    log_every: int = knob(100, minimum=1)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            _check_range(field, getattr(self, field.name))
        self.check()

    def check(self) -> None:
        """The rules between fields and those no range states; a model's dataclass extends it."""
        if self.mixed_precision not in MIXED_PRECISION_MODES:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION_MODES}, got {self.mixed_precision!r}")
        if self.total_steps > MAX_STEPS:
            raise ValueError(f"epochs × steps_per_epoch = {self.total_steps} is more than {MAX_STEPS} steps")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}] (NumPy's seed range), got {self.seed}")
        if self.decay_start_epoch is not None and not 0 <= self.decay_start_epoch < self.epochs:
            raise ValueError(f"decay_start_epoch must be in [0, epochs={self.epochs}), got {self.decay_start_epoch}")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def decay_start_step(self) -> int | None:
        if self.decay_start_epoch is None:
            return None
        return self.decay_start_epoch * self.steps_per_epoch


def _check_range(field: dataclasses.Field, value: Any) -> None:
    """Refuse `value` outside the range `knob` declared for `field`, in one line."""
    bounds = {key: field.metadata[key] for key in _RANGE_WORDS if key in field.metadata}  # lower first
    if not bounds or value is None:
        return
    finite = not isinstance(value, float) or math.isfinite(value)
    if finite and all(_IN_RANGE[key](value, bound) for key, bound in bounds.items()):
        return
    words = " and ".join(f"{_RANGE_WORDS[key]} {bound:g}" for key, bound in bounds.items())
    if len(bounds) == 2:  # one lower and one upper bound, as an interval
        (low, low_bound), (high, high_bound) = bounds.items()
        words = f"in {'[('[low == 'above']}{low_bound:g}, {high_bound:g}{'])'[high == 'below']}"
    kind = "a finite number " if isinstance(value, float) else ""
    raise ValueError(f"{field.name} must be {kind}{words}, got {value}")


SHARED_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    # The demo's training: 700 steps, the learning rate decaying linearly to 0 over the second
    # half, sized from the Trainer's steps/s measured on a 2-core AVX2 CPU so that `make demo`
    # ends within 10 minutes there (docs/design.md, "Hyperparameters and presets").
    "cpu-demo": {
        "batch": 4,
        "epochs": 14,
        "steps_per_epoch": 50,
        "decay_start_epoch": 7,
        "checkpoint_every": 100,
        "summary_every": 100,
        "log_every": 50,
        "foreground_patches": FOREGROUND_SHARE,
    },
    # A real model without a GPU: cpu-demo's size trained for 3800 steps, the rate decaying over
    # the second half; sized, as cpu-demo, from the Trainer's steps/s on a 2-core AVX2 CPU for
    # 30 minutes there (docs/design.md, "Hyperparameters and presets").
    "cpu-30min": {
        "batch": 4,
        "epochs": 19,
        "steps_per_epoch": 200,
        "decay_start_epoch": 9,
        "checkpoint_every": 1000,
        "summary_every": 500,
        "log_every": 100,
        "foreground_patches": FOREGROUND_SHARE,
    },
    # For tests: a handful of cheap steps.
    "tiny": {
        "patch": 32,
        "batch": 2,
        "epochs": 1,
        "steps_per_epoch": 10,
        "bn_reestimation_batches": 4,
        "checkpoint_every": 5,
        "summary_every": 5,
        "log_every": 5,
    },
}
"""Each preset's values of the shared fields; each model's dataclass adds its own (`PRESETS`)."""
PRESETS = tuple(SHARED_PRESETS)
CPU_PRESETS = ("cpu-demo", "cpu-30min")
"""The presets sized for a 2-core CPU: a model's `PRESETS` gives its CPU sizes for each (docs/design.md,
"Hyperparameters and presets")."""


def schedule(preset_name: str) -> HParams:
    """The named preset's shared values, the same for every model (its schedule, for one): for
    code that needs no model, and so no TensorFlow."""
    return HParams(**SHARED_PRESETS[preset_name])


def field_types(params: type[HParams]) -> dict[str, Any]:
    """Each field of `params` with its type."""
    hints = typing.get_type_hints(params)
    return {field.name: hints[field.name] for field in dataclasses.fields(params)}


def own_fields(params: type[HParams]) -> frozenset[str]:
    """The fields a model's dataclass adds to the shared base: what only that model reads."""
    return frozenset(field_types(params)) - frozenset(field_types(HParams))


def size_fields(params: type[HParams]) -> tuple[str, ...]:
    """The fields that size a model (`knob(size=True)`), its own first, as the memory check names them."""
    sized = [field.name for field in dataclasses.fields(params) if field.metadata.get("size")]
    own = own_fields(params)
    return tuple(sorted(sized, key=lambda name: name not in own))


def override_key(item: str) -> str:
    """The hyperparameter a `key=value` override names."""
    return item.partition("=")[0].strip()


def parse_override(params: type[HParams], item: str) -> tuple[str, Any]:
    """A `key=value` override as the key and its value parsed with the field's type; the key
    must be a field of `params` (the caller names whose field an unknown key is)."""
    key, sep, text = override_key(item), *item.partition("=")[1:]
    if not sep:
        raise ValueError(f"override {item!r} is not of the form key=value")
    try:
        return key, _parse(text.strip(), field_types(params)[key])
    except ValueError as error:
        raise ValueError(f"bad value for hyperparameter {key!r}: {error}") from None


def to_dict(hp: HParams) -> dict[str, Any]:
    return dataclasses.asdict(hp)


def _parse(text: str, kind: Any) -> Any:
    """Parse `text` as `kind`: int, float, bool, str or Optional of one of them."""
    args = typing.get_args(kind)
    if type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        (kind,) = [arg for arg in args if arg is not type(None)]
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"expected a boolean (true/false), got {text!r}")
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"expected {kind.__name__}, got {text!r}") from None
