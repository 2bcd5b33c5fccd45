"""Model family cost: FLOPs per training step (TensorFlow's profiler on the traced step) and
steps/s on this CPU, for each model at the `cpu-demo` batch and patch size, and for the paired
configuration the quality benchmark trained before the family existed (the cycle-identity
CycleGAN with its cycle, identity and adversarial weights at 0, which still runs F, D_A and
D_B: game.SUPERVISED_ALONE).

Each model is the product's (`ctdenoise.trainer_module.models.build`) on random patches; the values do
not change the cost. WGAN-VGG runs on a VGG19 weights file of random values that this
benchmark writes (ImageNet's cannot be downloaded here; speed does not depend on the values).
The first call (tracing) is timed apart from the steady state.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import common, game, quality

PRESET = "cpu-demo"
PAPER_RED_CNN = ["red_channels=96", "red_kernel=5"]
PAPER_WGAN_VGG = ["wgan_channels=32", "critic_channels=64", "critic_dense=1024"]
"""The paper sizes, which the CPU presets shrink (each model's params.CPU_SIZES)."""
PLAN = {
    "cycle_identity": [],
    "cyclegan": ["model=cyclegan"],
    "paired, zeroed CycleGAN": game.SUPERVISED_ALONE + quality.NO_TANH,
    "red_cnn (preset: 64 channels, 5x5)": ["model=red_cnn"],
    "red_cnn (paper size: 96 channels)": ["model=red_cnn", *PAPER_RED_CNN],
    "red_cnn, 48 channels": ["model=red_cnn", "red_channels=48"],
    "wgan_vgg (preset: 16, critic 16, dense 128)": ["model=wgan_vgg", "vgg_weights={vgg}"],
    "wgan_vgg, 32, critic 32, dense 256": [
        "model=wgan_vgg",
        "vgg_weights={vgg}",
        "critic_channels=32",
        "critic_dense=256",
        "wgan_channels=32",
    ],
    "wgan_vgg (paper size)": ["model=wgan_vgg", "vgg_weights={vgg}", *PAPER_WGAN_VGG],
}
"""Label → overrides of the preset; {vgg} becomes the random VGG19 weights file's path. Each
model at the preset's own size, then larger (and for RED-CNN one smaller) sizes: the preset
takes the largest whose step is no slower than cycle_identity's."""
DEFAULT = "cycle_identity"
"""The default model, whose step the other models' preset sizes may not be slower than."""
BASELINE = "paired, zeroed CycleGAN"
"""The paired configuration before the family: what red_cnn replaces."""
MIN_STEPS, MIN_SECONDS = 5, 8.0


def run(
    preset_name: str,
    overrides: list[str],
    min_steps: int,
    min_seconds: float,
    after: Callable[[Any, Any, Any], dict] | None = None,
) -> dict:
    """FLOPs of one step from the traced per-replica step, then steps/s of the whole step;
    `after(model, a, b)`, when given, measures more on the same traced model (its result is
    added under "after")."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    from ctdenoise.trainer_module.data import CHANNELS
    from ctdenoise.trainer_module.models import build, configure

    hp = configure(preset_name, overrides)
    shape = [hp.batch, hp.patch, hp.patch, CHANNELS]  # each patch with its level map
    a, b = (tf.random.stateless_uniform(shape, [seed, 0], -1.0, 1.0) for seed in (1, 2))
    model = build(hp)
    graph = model._compiled_replica_step.get_concrete_function(a, b).graph
    options = (
        option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .build()
    )
    flops = model_analyzer.profile(graph, options=options).total_float_ops
    step = lambda: [v.numpy() for v in model.train_step(a, b).values()]  # noqa: E731 (.numpy() waits)
    _, first = common.timed(step)
    rate = common.measure(step, hp.batch, min_seconds=min_seconds, min_calls=min_steps)
    more = {"after": after(model, a, b)} if after else {}
    gc.collect()
    step_s = rate.seconds / rate.calls
    return {
        "model": hp.model,
        "gflop_per_step": round(flops / 1e9, 3),
        "mflop_per_patch_pixel": round(flops / (hp.batch * hp.patch**2) / 1e6, 3),
        "steps_per_s": round(1.0 / step_s, 4),
        "step_s": round(step_s, 3),
        "achieved_gflop_per_s": round(flops / step_s / 1e9, 2),
        **rate.as_dict("patches"),
        "first_step_s": round(first, 1),
        "batch": hp.batch,
        "patch": hp.patch,
        "overrides": " ".join(overrides) or "none",
        **more,
    }


def _options(parser) -> None:
    parser.add_argument(
        "--name", default="model_cost", help="result name, e.g. model_cost_avx2 for a run under ONEDNN_MAX_CPU_ISA=AVX2"
    )


def main() -> None:
    args = common.parse_args("benchmarks.model_cost", __doc__, _options)
    common.quiet_tensorflow()
    import tf_keras as keras

    import ctdenoise.tensorflow_env  # noqa: F401  (before tf.keras is first touched)

    preset_name, min_steps, min_seconds = ("tiny", 2, 0.5) if args.quick else (PRESET, MIN_STEPS, MIN_SECONDS)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    limited = f", oneDNN limited to {isa}" if isa else ""
    title = f"Model family: FLOPs and steps/s per training step ({preset_name}{limited})"
    bench = common.Benchmark(args, args.name, title)
    variants = {}
    with tempfile.TemporaryDirectory() as scratch:
        vgg = Path(scratch) / "vgg19_random_notop.h5"
        keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3)).save_weights(str(vgg))
        for label, overrides in PLAN.items():
            variants[label] = run(preset_name, [o.format(vgg=vgg) for o in overrides], min_steps, min_seconds)
            variants[label]["overrides"] = " ".join(overrides) or "none"  # the file's path is this run's alone
            bench.log(
                f"{label}: {variants[label]['gflop_per_step']:.2f} GFLOP/step, "
                f"{variants[label]['steps_per_s']:.3f} steps/s"
            )
    base, default = variants[BASELINE], variants[DEFAULT]
    ratios = [
        common.Ratio(f"{label} / {BASELINE}, steps/s", v["steps_per_s"] / base["steps_per_s"], None)
        for label, v in variants.items()
        if label != BASELINE
    ]
    ratios += [
        common.Ratio(
            f"{label} / {DEFAULT}, steps/s (the preset's sizing rule: at least 1)",
            v["steps_per_s"] / default["steps_per_s"],
            1.0 if "(preset" in label else None,
        )
        for label, v in variants.items()
        if label != DEFAULT
    ]
    bench.finish(
        params={"preset": preset_name, "plan": PLAN, "data": "random patches of the preset's batch and patch size"},
        variants=variants,
        ratios=ratios,
        notes=[
            "FLOPs: TensorFlow's profiler (float_operation) on the traced per-replica step (forward, gradients "
            "and optimizer updates; a multiply-add counts 2); ops whose shapes are not static (the image pools' "
            "queries) are not counted, every convolution and matrix product is.",
            f"ONEDNN_MAX_CPU_ISA={isa}: oneDNN's kernels limited to that instruction set, emulating a CPU without "
            "the newer ones."
            if isa
            else "oneDNN free to use every instruction set of this CPU.",
            "CPU only; mixed precision off (it is on only on a GPU).",
        ],
    )


if __name__ == "__main__":
    main()
