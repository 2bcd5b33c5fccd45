"""Input pipeline: patches/s of the trainer's TFRecord tf.data pipeline vs a seed-style
DICOM pipeline (list_files → py_function pydicom read → normalise → crop → batch).

Both read the same simulated 512×512 LDCT slices of the train-split patients and emit
batches of 10 random 56×56 patches. The seed style decodes a DICOM file for every patch,
in Python under the GIL; ours parses TFRecords in the graph and caches the decoded slices,
so after the first epoch it only crops. The first batch (which waits for the shuffle
buffer, i.e. the whole first epoch here) is timed apart from the steady state.
"""

from __future__ import annotations

import glob
from typing import Any

import numpy as np

from benchmarks import common, datasets

TARGET = 10.0
PATCH, BATCH = 56, 10
FULL: dict[str, Any] = dict(size=512, patients=8, slices=32, steady_s=8.0)
QUICK: dict[str, Any] = dict(size=128, patients=2, slices=8, steady_s=1.0)
GPU_TFLOPS = 100.0
"""Assumed sustained mixed-precision throughput of one modern data-centre GPU on this
model's small 56×56 convolutions: about a third of an A100's 312 TFLOP/s fp16 dense peak
(a quarter of that for an H100's ~990). Nothing here measures it; no GPU was available."""


def seed_style(dicom_patterns: list[str], patch: int, batch: int, seed: int):
    """The seed project's pipeline, faithfully: one DICOM read per patch, in a py_function."""
    import tensorflow as tf

    from ctdenoise.dicomio.reader import read_ct_slices
    from ctdenoise.trainer_module.data import normalize_hu

    def read(path: tf.Tensor) -> np.ndarray:
        name = path.numpy().decode()
        return read_ct_slices(name, name)[0].hu.astype(np.float32)

    def load(path: tf.Tensor) -> tf.Tensor:
        hu = tf.py_function(read, [path], tf.float32)
        return tf.expand_dims(normalize_hu(tf.ensure_shape(hu, [None, None])), -1)

    return (
        tf.data.Dataset.list_files(dicom_patterns, shuffle=True, seed=seed)
        .repeat()
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .map(lambda image: tf.image.random_crop(image, [patch, patch, 1]), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def paper_step_flops() -> float:
    """Floating-point operations of one paper-preset training step (batch 10, 56×56).

    Counted by TensorFlow's profiler on one forward pass of G and of D; a step runs six
    generator and six discriminator passes (G and F on a, b and each other's output; D_A
    and D_B on real, fake and pooled fake), all with gradients, and backward costs about
    twice forward.
    """
    import tensorflow as tf

    from ctdenoise.trainer_module.data import CHANNELS
    from ctdenoise.trainer_module.models import preset
    from ctdenoise.trainer_module.models.cycle_identity.networks import build_discriminator, build_generator
    from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams

    hp = preset("paper", CycleIdentityParams)
    generator_input, patch = ([1, hp.patch, hp.patch, channels] for channels in (CHANNELS, 1))
    per_patch = 6 * _forward_flops(build_generator(hp, "G"), tf.TensorSpec(generator_input, tf.float32))
    per_patch += 6 * _forward_flops(build_discriminator(hp, "D"), tf.TensorSpec(patch, tf.float32))
    return 3.0 * per_patch * hp.batch


def _forward_flops(model, spec) -> float:
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec).graph
    options = (
        option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
        .with_empty_output()
        .build()
    )
    return float(model_analyzer.profile(graph, options=options).total_float_ops)


def main() -> None:
    args = common.parse_args("benchmarks.input_pipeline", __doc__)
    common.quiet_tensorflow()

    from ctdenoise.contract.names import split_dir
    from ctdenoise.trainer_module.data import patch_batches

    sizes = QUICK if args.quick else FULL
    bench = common.Benchmark(args, "input_pipeline", "Input pipeline: patches/s, TFRecord tf.data vs seed-style DICOM")
    data = datasets.replicated(args.data, size=sizes["size"], patients=sizes["patients"], slices=sizes["slices"])
    examples = datasets.ingested(args.data, data)
    records = [split_dir(str(examples), "train") + "/*.gz"]
    patients = datasets.train_patients(data)
    dicoms = [str(data.root / p / "LDCT" / "*.dcm") for p in patients]
    n_slices = sum(len(glob.glob(p)) for p in dicoms)
    bench.log(f"{n_slices} LDCT slices of {len(patients)} train patients, {sizes['size']}² px")

    pipelines = {
        "ours (TFRecord, cached)": lambda: patch_batches(records, "ldct", PATCH, BATCH, seed=0),
        "ours, no cache (decode every epoch)": lambda: patch_batches(records, "ldct", PATCH, BATCH, seed=0, cache=None),
        "seed-style (DICOM via py_function)": lambda: seed_style(dicoms, PATCH, BATCH, seed=0),
    }
    variants = {}
    for name, build in pipelines.items():
        batches = iter(build())
        _, first = common.timed(batches.__next__)
        next(batches)  # one more: the prefetch and AUTOTUNE threads are running
        rate = common.measure(batches.__next__, BATCH, min_seconds=sizes["steady_s"], min_calls=5)
        variants[name] = {"first_batch_s": round(first, 2), **rate.as_dict("patches")}
        bench.log(f"{name}: {rate.per_second:,.0f} patches/s steady, first batch after {first:.1f} s")

    ours, seed = (
        variants[k]["patches_per_s"] for k in ("ours (TFRecord, cached)", "seed-style (DICOM via py_function)")
    )
    step_flops = paper_step_flops()
    demand = GPU_TFLOPS * 1e12 / step_flops * BATCH
    keeps_up = {name: v["patches_per_s"] >= demand for name, v in variants.items()}
    cache_mib = n_slices * sizes["size"] ** 2 * 4 / 2**20
    notes = [
        f"GPU demand (assumed, not measured): one paper-preset step is {step_flops / 1e12:.2f} TFLOP "
        f"(profiler FLOP count, forward + 2x backward); at an assumed {GPU_TFLOPS:g} TFLOP/s sustained "
        f"mixed precision a modern GPU would run {demand / BATCH:.1f} steps/s = {demand:,.0f} patches/s.",
        *(
            f"{name}: {v['patches_per_s']:,.0f} patches/s on this machine's 2 cores "
            f"{'keeps up with' if keeps_up[name] else 'does NOT keep up with'} that demand "
            f"({v['patches_per_s'] / demand:.1f}x); it would feed a GPU sustaining up to "
            f"{v['patches_per_s'] / BATCH * step_flops / 1e12:,.0f} TFLOP/s."
            for name, v in variants.items()
        ),
        "The cache is what makes the TFRecord pipeline fast: without it every patch costs parsing and "
        "decompressing a GZIP example holding both doses, which is slower than reading one uncompressed "
        f"DICOM file. The cache holds the decoded float32 slices of one dose, {cache_mib:,.0f} MiB here "
        "per stream (LDCT and NDCT are cached separately).",
        "The first batch of the TFRecord pipelines waits for the shuffle buffer (256 slices, here the "
        "whole first epoch) to be decoded; that one-off cost is the first_batch_s column.",
    ]
    bench.finish(
        params={
            "size_px": sizes["size"],
            "patch": PATCH,
            "batch": BATCH,
            "train_slices": n_slices,
            "train_patients": len(patients),
            "dose": datasets.DOSE,
        },
        variants=variants,
        ratios=[common.Ratio("ours / seed-style patches/s (steady state)", ours / seed, TARGET)],
        notes=notes,
        extra={
            "paper_step_tflop": step_flops / 1e12,
            "assumed_gpu_tflops": GPU_TFLOPS,
            "gpu_demand_patches_per_s": demand,
            "keeps_up": keeps_up,
        },
    )


if __name__ == "__main__":
    main()
