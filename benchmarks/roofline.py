"""Training step against the CPU's peak (a roofline): for each model and preset, the step's
FLOPs (TensorFlow's profiler on the traced step), its achieved GFLOP/s, the machine's float32
peak measured in the same process (a large matrix product on all cores), and their ratio;
then the cpu-demo step of the default model under the runtime settings the profile points
to, each against one thread per op, and where its time goes by op type.

Each variant runs in its own child process, since TensorFlow reads these settings only when
it is first imported or first runs an op:

- oneDNN, one thread per op: `ctdenoise.tensorflow_env` turns oneDNN's kernels on (TensorFlow's
  own default turns them on only on CPUs with AVX-512 VNNI, AVX-512 BF16 or AMX) and, on up to
  two cores, runs each op on one thread, so that the step's many small independent ops run side
  by side;
- oneDNN with TensorFlow's own thread count (each op split over all cores). The product trains
  each model with the faster of these two for it (`DenoisingModel.ONE_THREAD_PER_OP`);
- Eigen with TensorFlow's threads: what TensorFlow runs by default on an AVX2 CPU;
- on a CPU with AVX-512, each of these again with oneDNN limited to AVX2
  (ONEDNN_MAX_CPU_ISA=AVX2), emulating a CPU without it.

The models are the product's (`benchmarks.model_cost.run`, random patches; WGAN-VGG on a VGG19
weights file of random values that this benchmark writes). Where the time goes comes from the
profiler's trace of a few steps: each op type's time, summed over the threads that ran it.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import common
from ctdenoise.app.machine import cpu_flags

PEAK_TARGET = 0.4
"""The cpu-demo step's achieved GFLOP/s as a share of the measured float32 peak."""
SPEEDUP_TARGET = 2.0
"""The cpu-demo step's steps/s against TensorFlow's default kernels on an AVX2 CPU (Eigen)."""
MODELS = {
    "cycle_identity": [],
    "cyclegan": ["model=cyclegan"],
    "red_cnn": ["model=red_cnn"],
    "wgan_vgg": ["model=wgan_vgg", "vgg_weights={vgg}"],
}
"""Each model of the family at a preset's own sizes; {vgg} becomes the random VGG19 file."""
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-demo": dict(min_steps=8, min_seconds=15.0),
    "paper": dict(min_steps=2, min_seconds=0.0),
    "tiny": dict(min_steps=2, min_seconds=0.5),
}
"""Timed steps after the first, per preset (a paper step takes seconds on 2 cores)."""
SETTINGS = {
    "oneDNN, one thread per op on <= 2 cores": {},
    "oneDNN, TensorFlow's threads": {"TF_NUM_INTRAOP_THREADS": "0"},
    "Eigen, TensorFlow's threads (its default on AVX2)": {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_NUM_INTRAOP_THREADS": "0"},
}
"""Runtime settings of the default model's cpu-demo step, as environment variables of the child
(which asks `ctdenoise.tensorflow_env` for one thread per op, kept where they set a count; 0
threads is TensorFlow's own choice)."""
ONE_THREAD, ONEDNN_THREADS, EIGEN = SETTINGS
AVX2_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
AVX2_SUFFIX = ", oneDNN limited to AVX2 (emulated)"
PEAK_SIDE, PEAK_SECONDS = 2048, 4.0
PROFILED_STEPS = 4
REPEATS = 2
"""Children of the default model's step for the two settings the target compares, interleaved
(each once, then again): the steps/s of one process differ from the next by 10-20 % on a shared
2-core machine, so each figure is the mean of its children, with each child's."""
TOP_OPS = 8


def main() -> None:
    args = common.parse_args("benchmarks.roofline", __doc__, _options)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))), flush=True)
        return
    presets = ["tiny"] if args.quick else args.presets
    emulate = "avx512f" in cpu_flags() and "ONEDNN_MAX_CPU_ISA" not in os.environ
    family = " on AVX-512, AVX2 emulated" if emulate else ""
    name = args.name or ("roofline_avx512" if emulate else "roofline")
    bench = common.Benchmark(args, name, f"Training step against the CPU's peak (roofline{family})")
    caps: list[tuple[str, dict[str, str]]] = [("", {})] + ([(AVX2_SUFFIX, AVX2_CAP)] if emulate else [])
    with tempfile.TemporaryDirectory() as scratch:
        jobs = [
            (preset, model, setting, SETTINGS[setting])
            for preset in presets
            for model in MODELS
            for setting in (ONE_THREAD, ONEDNN_THREADS)
        ]
        jobs += [(presets[0], "cycle_identity", EIGEN, SETTINGS[EIGEN])]
        jobs += [(presets[0], "cycle_identity", setting, SETTINGS[setting]) for setting in (ONE_THREAD, EIGEN)] * (
            REPEATS - 1
        )
        runs: dict[str, list[dict]] = collections.defaultdict(list)
        for (preset, model, setting, env), (suffix, cap) in ((job, cap) for job in jobs for cap in caps):
            label = f"{preset}: {model}, {setting}{suffix}"
            profile = preset == presets[0] and model == "cycle_identity" and not runs[label]
            runs[label].append(
                _spawn(dict(preset=preset, model=model, scratch=scratch, profile=profile), {**env, **cap})
            )
            bench.log(f"{label}: {_line(runs[label][-1])}")
    variants = {label: _mean(children) for label, children in runs.items()}
    bench.finish(
        params={
            "presets": presets,
            "models": MODELS,
            "settings": SETTINGS,
            "peak": f"float32 {PEAK_SIDE}x{PEAK_SIDE} matrix products, one per core side by side, for "
            f"{PEAK_SECONDS:g} s, in the same process as the step",
            "data": "random patches of the preset's batch and patch size",
        },
        variants={label: _flat(v) for label, v in variants.items()},
        ratios=_ratios(variants, presets[0], emulate),
        notes=_notes(variants, presets[0]),
    )


def _spawn(job: dict, env: dict[str, str]) -> dict:
    """Run one variant in a fresh interpreter with `env` added; its result is its last stdout line."""
    command = [sys.executable, "-m", "benchmarks.roofline", "--out", tempfile.gettempdir(), "--child", json.dumps(job)]
    result = subprocess.run(command, cwd=common.REPO_ROOT, env={**os.environ, **env}, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"roofline: the child {job} with {env} failed:\n{result.stderr[-3000:]}")
    return {
        **json.loads(result.stdout.strip().splitlines()[-1]),
        "env": " ".join(f"{k}={v}" for k, v in env.items()) or "none",
    }


def _child(job: dict) -> dict[str, Any]:
    """In the child: the peak, then the model's step (FLOPs, steps/s), and the profile if asked."""
    from ctdenoise import tensorflow_env  # before TensorFlow

    tensorflow_env.training_threads(True)
    common.quiet_tensorflow()
    from benchmarks import model_cost

    peak = measure_peak()
    needs_vgg = any("{vgg}" in o for o in MODELS[job["model"]])
    vgg = _vgg_file(Path(job["scratch"])) if needs_vgg else None  # built only in the children that read it
    overrides = [o.format(vgg=vgg) for o in MODELS[job["model"]]]
    step = model_cost.run(
        job["preset"], overrides, **PRESETS[job["preset"]], after=profile_ops if job.get("profile") else None
    )
    out = {
        "peak_gflop_per_s": round(peak, 1),
        "gflop_per_step": step["gflop_per_step"],
        "steps_per_s": step["steps_per_s"],
        "achieved_gflop_per_s": step["achieved_gflop_per_s"],
        "of_peak": round(step["achieved_gflop_per_s"] / peak, 3),
        "cpu_cores": step["cpu_cores"],
        "first_step_s": step["first_step_s"],
        "batch": step["batch"],
        "patch": step["patch"],
    }
    if job.get("profile"):
        out["time_by_op"] = step["after"]
    return out


def measure_peak() -> float:
    """float32 GFLOP/s of large matrix products on all cores, one per core side by side (so that
    it fills the cores whether each op gets one thread or all of them): what the CPU reaches on
    the friendliest dense work TensorFlow offers, the roof the step is measured against."""
    import tensorflow as tf

    cores = len(os.sched_getaffinity(0))
    matrices = [tf.random.stateless_uniform([PEAK_SIDE, PEAK_SIDE], [i, 0]) for i in range(cores)]
    products = tf.function(lambda: tf.add_n([tf.reduce_sum(tf.matmul(m, m)) for m in matrices]))
    products().numpy()
    rate = common.measure(lambda: products().numpy(), 1, min_seconds=PEAK_SECONDS, min_calls=3)
    return 2 * PEAK_SIDE**3 * cores * rate.calls / rate.seconds / 1e9


def profile_ops(model, a, b) -> dict[str, float]:
    """Milliseconds per step of the TOP_OPS op types that took longest in a profiler trace of
    PROFILED_STEPS steps of `model` (summed over threads, so two ops side by side both count),
    and the rest."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        for _ in range(PROFILED_STEPS):
            model.train_step(a, b)["lr"].numpy()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        space.ParseFromString(Path(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0]).read_bytes())
    by_type: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if _is_op(name):
                    by_type[name.rsplit(":", 1)[1]] += event.duration_ps
    ms = {op: ps / 1e9 / PROFILED_STEPS for op, ps in by_type.items()}
    top = dict(sorted(ms.items(), key=lambda item: -item[1])[:TOP_OPS])
    return {**{op: round(v, 1) for op, v in top.items()}, "other ops": round(sum(ms.values()) - sum(top.values()), 1)}


def _is_op(event: str) -> bool:
    """Whether a trace event is a TensorFlow op ("scope/name:Type"), not the executor's or the
    runtime's own events ("ExecutorState::Process", "EagerLocalExecute: fn")."""
    name, _, kind = event.rpartition(":")
    return bool(name) and kind.isidentifier() and "::" not in event and not event.startswith("$")


def _vgg_file(scratch: Path) -> Path:
    """A VGG19 weights file of random values (speed does not depend on them), written once."""
    path = scratch / "vgg19_random_notop.h5"
    if not path.is_file():
        import tf_keras as keras

        keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3)).save_weights(str(path))
    return path


def _ratios(variants: dict[str, dict], preset: str, emulate: bool) -> list[common.Ratio]:
    ratios = []
    for suffix in [""] + ([AVX2_SUFFIX] if emulate else []):
        one_thread = variants[f"{preset}: cycle_identity, {ONE_THREAD}{suffix}"]
        ratios.append(
            common.Ratio(
                f"{preset} cycle_identity step, achieved / measured float32 peak{suffix}",
                one_thread["of_peak"],
                PEAK_TARGET,
            )
        )
        eigen = variants[f"{preset}: cycle_identity, {EIGEN}{suffix}"]
        ratios.append(
            common.Ratio(
                f"{preset} cycle_identity steps/s, {ONE_THREAD} / {EIGEN}{suffix}",
                one_thread["steps_per_s"] / eigen["steps_per_s"],
                SPEEDUP_TARGET,
            )
        )
        for model in MODELS:
            mine, other = (
                variants[f"{preset}: {model}, {setting}{suffix}"] for setting in (ONE_THREAD, ONEDNN_THREADS)
            )
            ratios.append(
                common.Ratio(
                    f"{preset} {model} steps/s, {ONE_THREAD} / {ONEDNN_THREADS}{suffix}",
                    mine["steps_per_s"] / other["steps_per_s"],
                    None,
                )
            )
    return ratios


def _notes(variants: dict[str, dict], preset: str) -> list[str]:
    from ctdenoise.tensorflow_env import SMALL_CPU_CORES

    cores = len(os.sched_getaffinity(0))
    threads = "one thread per op" if cores <= SMALL_CPU_CORES else "TensorFlow's own thread count"
    notes = [
        f"This machine has {cores} usable cores, so the first setting ran {threads}.",
        "FLOPs: TensorFlow's profiler (float_operation) on the traced per-replica step (forward, gradients "
        "and optimizer updates; a multiply-add counts 2). Achieved GFLOP/s: those FLOPs over the whole "
        "step's wall time (image pools, reductions and the step counter included).",
    ]
    above = [label for label, v in variants.items() if v["of_peak"] > 1]
    if above:
        notes.append(
            f"Above the measured peak: {', '.join(above)}. The peak is what TensorFlow's matrix product "
            "reaches here, not the CPU's theoretical one, and oneDNN's convolutions with many channels "
            "(VGG19's 64 to 512) can beat it; a FLOP count of the traced graph may also include ops that "
            "Grappler prunes before they run."
        )
    for label, v in variants.items():
        if v.get("time_by_op"):
            ops = ", ".join(f"{op} {ms:g}" for op, ms in v["time_by_op"].items())
            notes.append(
                f"Where the time goes, {label} (ms per step by op type, summed over threads; "
                f"step {1000 / v['steps_per_s']:.0f} ms of wall time): {ops}."
            )
    return notes


def _mean(children: list[dict]) -> dict:
    """One setting's figures: the first child's, with steps/s, achieved GFLOP/s, the peak and
    their ratio averaged over the children, and the children's steps/s."""
    first = children[0]
    if len(children) == 1:
        return first
    mean = {
        key: round(sum(c[key] for c in children) / len(children), 3)
        for key in ("steps_per_s", "achieved_gflop_per_s", "peak_gflop_per_s", "of_peak")
    }
    return {
        **first,
        **mean,
        "children": len(children),
        "steps_per_s_each": " / ".join(f"{c['steps_per_s']:.3f}" for c in children),
    }


def _flat(v: dict) -> dict:
    return {key: value for key, value in v.items() if key != "time_by_op"}


def _line(v: dict) -> str:
    return (
        f"{v['gflop_per_step']:.2f} GFLOP/step, {v['steps_per_s']:.3f} steps/s, {v['achieved_gflop_per_s']:.1f} "
        f"of {v['peak_gflop_per_s']:.1f} GFLOP/s peak ({100 * v['of_peak']:.0f} %)"
    )


def _options(parser) -> None:
    parser.add_argument(
        "--presets",
        nargs="+",
        choices=sorted(PRESETS),
        default=["cpu-demo", "paper"],
        help="presets to run every model at (the first also gets the runtime settings)",
    )
    parser.add_argument(
        "--name",
        default=None,
        help="result name (default: roofline_avx512 on a CPU with AVX-512, where the run also "
        "limits oneDNN to AVX2, else roofline), so that each CPU family's run keeps its own file",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)


if __name__ == "__main__":
    main()
