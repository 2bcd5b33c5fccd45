"""Every training hyperparameter in one frozen dataclass, with named presets.

One value object (rather than loose flags) so that a run's configuration can be written
next to its model as JSON, read back exactly, and changed from the command line with
`key=value` overrides that are checked against the field types. `resolve` is the one way
from a preset name and overrides to an `HParams`; it is serialised once, at the Trainer's
boundary (docs/design.md, "The algorithm: cycle-identity CycleGAN for low-dose CT").
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ctdenoise.contract.hu import FOREGROUND_HU, HU_MAX, HU_MIN

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


@dataclass(frozen=True)
class HParams:
    """Hyperparameters; the defaults are the paper configuration (docs/design.md, "The algorithm: cycle-identity
    CycleGAN for low-dose CT")."""

    model: str = "cycle_identity"
    """Which model of the family to train (trainer_module.models; docs/design.md, "The model family")."""

    # Architecture of the CycleGANs.
    ngf: int = 128
    """Generator feature channels."""
    nglf: int = 15
    """Channels of the generator's last conv_layer before the 1-channel output."""
    ndf: int = 64
    """Discriminator channels of the first conv (doubled by each later conv)."""
    tanh_output: bool = True
    """End the generators with tanh, as the paper does (docs/design.md, "Making the adversarial game start"). tanh
    reaches -1
    (air) only at minus infinity, so the generator must learn a residual that jumps by about
    2 at every air–tissue edge and is large in the lungs; false makes the residual sum itself
    the output, clipped to the HU window in inference."""

    # Architecture of RED-CNN.
    red_channels: int = 96
    """Channels of each of RED-CNN's layers but the last (96 in its paper)."""
    red_kernel: int = 5
    """Side of RED-CNN's square kernels (5 in its paper): each layer trims (red_kernel - 1) / 2
    pixels of context on each side."""

    # WGAN-VGG.
    wgan_channels: int = 32
    """Channels of each of the WGAN-VGG generator's eight 3×3 convolutions but the last (32 in its paper)."""
    critic_channels: int = 64
    """Channels of the critic's first two convolutions, doubled for each later pair (64 in its paper)."""
    critic_dense: int = 1024
    """Units of the critic's hidden fully connected layer (1024 in its paper)."""
    gp_lambda: float = 10.0
    """Weight of WGAN-GP's gradient penalty (10 in its paper)."""
    perceptual_lambda: float = 0.1
    """λ₁, the weight of the VGG19 perceptual loss against the generator's adversarial term (0.1)."""
    n_critic: int = 4
    """Critic updates per generator update (4 in its paper's code)."""
    vgg_weights: str | None = None
    """A Keras weights file of VGG19 without its top (ImageNet weights: the user brings it; nothing
    is downloaded). WGAN-VGG refuses to start without it."""

    # Data.
    patch: int = 56
    """Side of the square training patches; fixes the discriminator's input and output size."""
    batch: int = 10
    """Global batch size (split across replicas under a distribution strategy)."""

    foreground_patches: float = 0.0
    """Share of training patches drawn where at least 90 % of the pixels are the patient
    (above `foreground_hu`); the others anywhere (0: all anywhere, the paper). Random
    patches of a slice are mostly air, which looks the same at both doses, so the
    discriminators cannot learn from them; the patches drawn anywhere keep the generators
    seeing air (docs/design.md, "Making the adversarial game start")."""
    foreground_hu: float = FOREGROUND_HU
    """The patient's line for `foreground_patches`: -900 HU counts the lungs (about -850 HU)
    as patient, the Evaluator's body line -500 HU leaves them out (a stronger game, darker
    lungs: docs/design.md, "Making the adversarial game start"). Unused while `foreground_patches` is 0."""
    augment: bool = True
    """Turn each training patch by a random flip and 90° rotation (one of the square's eight
    symmetries; both doses of a pair alike). Evaluation and BatchNorm re-estimation always
    see the slices as they are."""
    paired: bool = False
    """Crop LDCT and NDCT patches at the same place of the same slice pair instead of from two
    independent streams (the paper trains unpaired)."""

    # Losses, the discriminators and the image pool.
    cycle_lambda: float = 10.0
    identity_gamma: float = 5.0
    adversarial_weight: float = 1.0
    """Weight of the generators' LSGAN terms (1 in the paper; 0 trains without them)."""
    supervised_lambda: float = 0.0
    """λ_sup of the supervised term λ_sup·L1(G(a), b) on co-located patches; needs `paired`
    (0: off, the paper's unpaired method)."""
    d_lr_scale: float = 1.0
    """The discriminators' learning rate as a multiple of `lr` (1 in the paper)."""
    d_joint_batch: bool = False
    """Judge real and fake patches in one discriminator batch, so that its BatchNorm
    statistics do not erase their difference in noise level (the paper calls D on each
    alone; docs/design.md, "Making the adversarial game start")."""
    d_window: bool = False
    """Show the discriminators their patches through the soft-tissue window (W400/L40, clipped)
    instead of the model's 3000 HU window, where 30 HU of noise is 0.02 of the range: the
    adversarial terms then judge, and push, only soft tissue and fat, and leave air, lungs and
    bone to the cycle and identity terms (docs/design.md, "Making the adversarial game start")."""
    pool_size: int = 50
    use_pool: bool = True
    """Feed the discriminators from a history of generated images (the original never did)."""

    # Optimisation.
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    epochs: int = 160
    steps_per_epoch: int = 1000
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
    bn_reestimation_batches: int = 50
    """Before export, re-estimate the generator's BatchNorm statistics as a plain average
    over this many batches of LDCT training patches (0: keep the moving averages). With the
    original's momentum 0.1 the moving statistics are essentially those of the last batch,
    so an unlucky final batch would otherwise skew every inference (seen: up to 14 dB)."""

    # Bookkeeping, in steps.
    checkpoint_every: int = 1000
    summary_every: int = 200
    log_every: int = 100

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION_MODES:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION_MODES}, got {self.mixed_precision!r}")
        for name in (
            "ngf",
            "nglf",
            "ndf",
            "red_channels",
            "red_kernel",
            "wgan_channels",
            "critic_channels",
            "critic_dense",
            "n_critic",
            "patch",
            "batch",
            "epochs",
            "steps_per_epoch",
            "checkpoint_every",
            "summary_every",
            "log_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.patch < MIN_PATCH:
            raise ValueError(
                f"patch must be >= {MIN_PATCH} (the discriminator's five 4x4 convolutions), got {self.patch}"
            )
        if self.total_steps > MAX_STEPS:
            raise ValueError(f"epochs × steps_per_epoch = {self.total_steps} is more than {MAX_STEPS} steps")
        if self.pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {self.pool_size}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in [0, {MAX_SEED}] (NumPy's seed range), got {self.seed}")
        for name in (
            "lr",
            "cycle_lambda",
            "identity_gamma",
            "adversarial_weight",
            "supervised_lambda",
            "d_lr_scale",
            "gp_lambda",
            "perceptual_lambda",
        ):
            value = getattr(self, name)
            positive = name in ("lr", "d_lr_scale")
            if not math.isfinite(value) or value < 0 or (positive and value == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.foreground_patches <= 1.0:
            raise ValueError(f"foreground_patches must be in [0, 1], got {self.foreground_patches}")
        if not HU_MIN < self.foreground_hu < HU_MAX:
            raise ValueError(
                f"foreground_hu must be inside the model's window ({HU_MIN:g}, {HU_MAX:g}) HU, got {self.foreground_hu}"
            )
        if self.supervised_lambda and not self.paired:
            raise ValueError("supervised_lambda needs paired patches: set paired=true")
        if self.bn_reestimation_batches < 0:
            raise ValueError(f"bn_reestimation_batches must be >= 0, got {self.bn_reestimation_batches}")
        if self.decay_start_epoch is not None and not 0 <= self.decay_start_epoch < self.epochs:
            raise ValueError(f"decay_start_epoch must be in [0, epochs={self.epochs}), got {self.decay_start_epoch}")

        if self.red_kernel % 2 == 0:
            raise ValueError(f"red_kernel must be odd (a centred kernel), got {self.red_kernel}")

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def decay_start_step(self) -> int | None:
        if self.decay_start_epoch is None:
            return None
        return self.decay_start_epoch * self.steps_per_epoch


SHARED_HPARAMS = frozenset(
    {
        "model",
        "patch",
        "batch",
        "foreground_patches",
        "foreground_hu",
        "augment",
        "lr",
        "beta1",
        "beta2",
        "epochs",
        "steps_per_epoch",
        "decay_start_epoch",
        "seed",
        "deterministic",
        "jit_compile",
        "mixed_precision",
        "bn_reestimation_batches",
        "checkpoint_every",
        "summary_every",
        "log_every",
    }
)
"""What every model reads: the data, the schedule, the seed and the strategy. Each model
declares the others it reads (trainer_module.models)."""

GAME_SWITCHES: dict[str, Any] = {"d_joint_batch": True, "d_window": True, "foreground_patches": 0.75}
"""The departures from the paper that start the adversarial game on CT (docs/design.md, "Making the adversarial
game start"):
the small presets use them, `paper` does not."""

CPU_MODEL_SIZES: dict[str, Any] = {"red_channels": 64, "wgan_channels": 16, "critic_channels": 16, "critic_dense": 128}
"""The other models' sizes in the CPU presets: for each, the largest size `benchmarks.model_cost`
measured whose training step is no slower than the cycle-identity model's at the preset's batch
and patch, natively and with oneDNN limited to AVX2 (BENCHMARKS.md, "Model family"), so that a
preset takes about as long whichever model it trains (docs/design.md, "Hyperparameters and presets")."""

_PRESETS = {
    "paper": HParams(),
    # The demo's training: 700 steps, the learning rate decaying linearly to 0 over the second
    # half, sized from the Trainer's steps/s measured on a 2-core AVX2 CPU so that `make demo`
    # ends within 10 minutes there (docs/design.md, "Hyperparameters and presets"; README, "Quickstart").
    "cpu-demo": HParams(
        ngf=16,
        nglf=8,
        ndf=16,
        batch=4,
        epochs=14,
        steps_per_epoch=50,
        decay_start_epoch=7,
        checkpoint_every=100,
        summary_every=100,
        log_every=50,
        **GAME_SWITCHES,
        **CPU_MODEL_SIZES,
    ),
    # A real model without a GPU: cpu-demo's size trained for 3800 steps, the rate decaying over
    # the second half; sized, as cpu-demo, from the Trainer's steps/s on a 2-core AVX2 CPU for
    # 30 minutes there (docs/design.md, "Hyperparameters and presets").
    "cpu-30min": HParams(
        ngf=16,
        nglf=8,
        ndf=16,
        batch=4,
        epochs=19,
        steps_per_epoch=200,
        decay_start_epoch=9,
        checkpoint_every=1000,
        summary_every=500,
        log_every=100,
        **GAME_SWITCHES,
        **CPU_MODEL_SIZES,
    ),
    # For tests: a handful of cheap steps.
    "tiny": HParams(
        ngf=4,
        nglf=4,
        ndf=4,
        red_channels=4,
        red_kernel=3,
        wgan_channels=4,
        critic_channels=4,
        critic_dense=8,
        n_critic=2,
        patch=32,
        batch=2,
        pool_size=4,
        epochs=1,
        steps_per_epoch=10,
        bn_reestimation_batches=4,
        checkpoint_every=5,
        summary_every=5,
        log_every=5,
    ),
}
PRESETS = tuple(_PRESETS)


def preset(name: str) -> HParams:
    try:
        return _PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


def resolve(preset_name: str, overrides: Iterable[str] = ()) -> HParams:
    """The named preset with `key=value` overrides applied."""
    return with_overrides(preset(preset_name), overrides)


def override_key(item: str) -> str:
    """The hyperparameter a `key=value` override names."""
    return item.partition("=")[0].strip()


def with_overrides(hp: HParams, overrides: Iterable[str]) -> HParams:
    """Apply `key=value` strings, each value parsed with its field's type."""
    types = _field_types()
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = override_key(item), *item.partition("=")[1:]
        if not sep:
            raise ValueError(f"override {item!r} is not of the form key=value")
        if key not in types:
            raise ValueError(f"unknown hyperparameter {key!r}; known: {', '.join(types)}")
        try:
            changes[key] = _parse(text.strip(), types[key])
        except ValueError as error:
            raise ValueError(f"bad value for hyperparameter {key!r}: {error}") from None
    return dataclasses.replace(hp, **changes)


def to_dict(hp: HParams) -> dict[str, Any]:
    return dataclasses.asdict(hp)


def from_dict(values: dict[str, Any]) -> HParams:
    """Inverse of to_dict; unknown keys are an error so that typos do not pass silently."""
    unknown = set(values) - set(_field_types())
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)}; known: {', '.join(_field_types())}")
    return HParams(**values)


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(HParams)
    return {field.name: hints[field.name] for field in dataclasses.fields(HParams)}


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
