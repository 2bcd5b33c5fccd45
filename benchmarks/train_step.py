"""Training step: steps/s and patches/s of `CycleIdentityGAN.train_step` on this CPU, run eagerly,
as a tf.function, and as a tf.function compiled with XLA (hyperparameter jit_compile=true).

The step is the product's (four models, three Adam updates, two image pools) on random
patches of the preset's batch and patch size; the values do not change the cost. The
first call (tracing, and for XLA compilation) is timed apart from the steady state and
reported as trace_compile_s. Eager runs the same Python through
`tf.config.run_functions_eagerly(True)`.
"""

from __future__ import annotations

import gc
from typing import Any

from benchmarks import common

TARGET = 1.3
MODES = ("eager", "function", "xla")
STEPS: dict[str, dict[str, Any]] = {
    "cpu-demo": dict(min_steps=8, min_seconds=10.0),
    "paper": dict(min_steps=2, min_seconds=0.0),
    "tiny": dict(min_steps=3, min_seconds=1.0),
}
"""Timed steps after the first, per preset. A paper step costs tens of seconds on 2 cores."""
FULL = {"cpu-demo": MODES, "paper": ("eager", "function")}
QUICK = {"tiny": ("eager", "function")}
"""The default plans (--quick skips XLA: even the tiny preset's step takes 3 minutes to compile). XLA compilation
of the step takes 4-15 minutes on this 2-core machine
whatever the preset, so the full run compiles it once (cpu-demo) to stay within its
30-minute budget; the paper preset's XLA figure is a separate command (--presets paper
--modes function xla --name train_step_paper_xla), rendered when its result exists."""

WHY_XLA_LOSES = (
    "Where XLA's time goes on CPU was profiled once (perf and XLA's HLO dump): docs/experiments.md, "
    "'XLA on CPU'. This run's cpu_cores and trace_compile_s columns are its own measured part."
)
"""A pointer to the profile, not the profile: a fixed text in every run's JSON would go stale."""


def run(preset_name: str, mode: str, min_steps: int, min_seconds: float) -> dict:
    """Build a fresh cycle-identity CycleGAN for `mode`, time its first step, then the steady state."""
    import tensorflow as tf

    from ctdenoise.trainer_module.data import CHANNELS
    from ctdenoise.trainer_module.models import preset, with_overrides
    from ctdenoise.trainer_module.models.cycle_identity.model import CycleIdentityGAN
    from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams

    hp = with_overrides(preset(preset_name, CycleIdentityParams), [f"jit_compile={mode == 'xla'}"])
    shape = [hp.batch, hp.patch, hp.patch, CHANNELS]  # each patch with its level map
    a, b = (tf.random.stateless_uniform(shape, [seed, 0], -1.0, 1.0) for seed in (1, 2))
    tf.config.run_functions_eagerly(mode == "eager")
    try:
        gan = CycleIdentityGAN(hp)
        step = lambda: gan.train_step(a, b)["g_total"].numpy()  # noqa: E731 (.numpy() waits for the step)
        _, first = common.timed(step)
        rate = common.measure(step, hp.batch, min_seconds=min_seconds, min_calls=min_steps)
    finally:
        tf.config.run_functions_eagerly(False)
        gc.collect()
    step_s = rate.seconds / rate.calls
    return {
        "steps_per_s": round(1.0 / step_s, 4),
        "step_s": round(step_s, 3),
        **rate.as_dict("patches"),
        "first_step_s": round(first, 1),
        "trace_compile_s": round(max(first - step_s, 0.0), 1),
        "batch": hp.batch,
        "patch": hp.patch,
    }


def main() -> None:
    args = common.parse_args("benchmarks.train_step", __doc__, _options)
    common.quiet_tensorflow()
    plan = QUICK if args.quick else FULL
    if args.presets:
        plan = {name: tuple(args.modes or MODES) for name in args.presets}
    title = "Training step on CPU: " + " vs ".join(dict.fromkeys(m for modes in plan.values() for m in modes))
    bench = common.Benchmark(args, args.name, title)
    variants, ratios = {}, []
    for preset_name, modes in plan.items():
        results = {}
        for mode in modes:
            results[mode] = run(preset_name, mode, **STEPS[preset_name])
            variants[f"{preset_name}: {mode}"] = results[mode]
            bench.log(
                f"{preset_name} {mode}: {results[mode]['steps_per_s']:.3f} steps/s, "
                f"first step {results[mode]['first_step_s']:.1f} s, {results[mode]['cpu_cores']:.2f} cores busy"
            )
        speed = {mode: r["steps_per_s"] for mode, r in results.items()}
        if {"xla", "function"} <= set(speed):
            ratios.append(
                common.Ratio(f"{preset_name}: XLA / tf.function steps/s", speed["xla"] / speed["function"], TARGET)
            )
        if {"function", "eager"} <= set(speed):
            ratios.append(
                common.Ratio(f"{preset_name}: tf.function / eager steps/s", speed["function"] / speed["eager"], None)
            )
    missed = any(r.met is False for r in ratios)
    bench.finish(
        params={
            "plan": {name: list(modes) for name, modes in plan.items()},
            "data": "random patches of the preset's batch and patch size",
        },
        variants=variants,
        ratios=ratios,
        limits=[WHY_XLA_LOSES] if missed else [],
        notes=[
            "CPU only: no GPU was available to this session, so there are no GPU step rates "
            "(mixed precision, which 'auto' turns on only on a GPU, was therefore off)."
        ],
    )


def _options(parser) -> None:
    parser.add_argument("--presets", nargs="+", choices=sorted(STEPS), help="instead of the default plan")
    parser.add_argument("--modes", nargs="+", choices=MODES, help="with --presets (default: all three)")
    parser.add_argument("--name", default="train_step", help="result file name (OUT/NAME.json)")


if __name__ == "__main__":
    main()
