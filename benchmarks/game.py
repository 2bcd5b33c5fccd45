"""The adversarial game: why the discriminators of the paper's CycleGAN never learn on CT, and
what the training switches of docs/design.md, "Making the adversarial game start" change, at the `cpu-demo` budget.

1. A discriminator alone (cpu-demo size, the product's `build_discriminator` and
   `discriminator_loss`) trained to tell real LDCT from real NDCT patches, judged the paper's
   way (real and fake batches apart) or in one joint batch, on patches drawn anywhere or on
   the patient's soft tissue (the body line, -500 HU): held-out accuracy after 400 steps.
2. The whole GAN through the Trainer's `run_fn`, the preset's steps, per set of switches: the
   discriminators' accuracy at the end, and the exported generator's in-body RMSE against the
   NDCT and PSNR against the noise-free truth on validation patients.

The validation patients (seed 11) are the ones the switches were chosen on; the quality
benchmark tests on other patients (seed 21).
"""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np

from benchmarks import common, datasets, quality, quality_sets
from ctdenoise.contract.hu import BODY_HU, FOREGROUND_HU
from ctdenoise.trainer_module.models.cycle_identity.params import GAME_SWITCHES

JOINT_FOREGROUND = "joint batch + foreground patches 0.75"
CHOSEN = "joint batch + soft-tissue window + foreground patches 0.75 (cpu-demo)"
CHOSEN_SWITCHES = [f"{name}={value}" for name, value in GAME_SWITCHES.items()]
SUPERVISED_ALONE = [*quality.HYBRID, "adversarial_weight=0", "cycle_lambda=0", "identity_gamma=0"]
"""The supervised term alone inside the cycle-identity CycleGAN, whose step still runs F, D_A
and D_B: the paired configuration before RED-CNN, on which the output was chosen."""
VARIANTS = {
    "paper": [],
    CHOSEN: CHOSEN_SWITCHES,
    "joint batch + foreground patches 1.0": ["d_joint_batch=true", "foreground_patches=1"],
    JOINT_FOREGROUND: ["d_joint_batch=true", "foreground_patches=0.75"],
    "joint batch + foreground patches 0.75, lungs left out (foreground_hu=-500)": [
        "d_joint_batch=true",
        "foreground_patches=0.75",
        "foreground_hu=-500",
    ],
    "joint batch + foreground patches 0.75 + D lr x4": [
        "d_joint_batch=true",
        "foreground_patches=0.75",
        "d_lr_scale=4",
    ],
    f"{CHOSEN}, no output tanh": CHOSEN_SWITCHES + quality.NO_TANH,
    "paired (supervised term alone)": CHOSEN_SWITCHES + SUPERVISED_ALONE,
    "paired, no output tanh": CHOSEN_SWITCHES + SUPERVISED_ALONE + quality.NO_TANH,
    "hybrid (CycleGAN + supervised term)": CHOSEN_SWITCHES + quality.HYBRID,
    "hybrid, no output tanh": CHOSEN_SWITCHES + quality.HYBRID + quality.NO_TANH,
}
"""Overrides of the paper's mechanics at the cpu-demo budget. Each line starts from the
paper's switches (PAPER_MECHANICS), so it states all it changes whatever the preset holds.
The last five choose the output (`tanh_output`) for unpaired, paired and hybrid training."""
PAPER_MECHANICS = [
    "d_joint_batch=false",
    "d_window=false",
    "foreground_patches=0",
    f"foreground_hu={FOREGROUND_HU:g}",
    "d_lr_scale=1",
]
FULL: dict[str, Any] = dict(
    size=256, train=(6, 8), validation=(2, 6), d_steps=400, d_batch=4, preset="cpu-demo", variants=VARIANTS
)
QUICK: dict[str, Any] = dict(
    size=64,
    train=(2, 2),
    validation=(1, 2),
    d_steps=20,
    d_batch=2,
    preset="tiny",
    variants={"paper": [], CHOSEN: VARIANTS[CHOSEN]},
)
SEEDS = {"train": 10, "validation": 11}


def discriminator_alone(
    train: quality_sets.Images, held_out: quality_sets.Images, hp, steps: int, joint: bool, foreground: float, scratch
) -> float:
    """Held-out accuracy of one discriminator trained `steps` steps on real LDCT (fake) vs
    real NDCT (real) patches, the way the GAN step judges them."""
    import tensorflow as tf
    import tf_keras as keras

    from ctdenoise.trainer_module.data import patch_batches
    from ctdenoise.trainer_module.losses import discriminator_loss, judgement
    from ctdenoise.trainer_module.models.cycle_identity.networks import build_discriminator

    def stream(images: quality_sets.Images, dose: str, seed: int):
        return iter(
            _patch_stream(
                getattr(images, dose),
                scratch / f"{dose}_{seed}.gz",
                hp.patch,
                hp.batch,
                seed,
                foreground,
                patch_batches,
            )
        )

    keras.utils.set_random_seed(hp.seed)
    discriminator = build_discriminator(hp, "D")
    optimizer = keras.optimizers.Adam(hp.lr, beta_1=hp.beta1, beta_2=hp.beta2)

    def judge(real, fake):
        if not joint:
            return discriminator(real, training=True), discriminator(fake, training=True)
        logits = discriminator(tf.concat([real, fake], 0), training=True)
        return logits[: hp.batch], logits[hp.batch :]

    @tf.function
    def step(real, fake):
        with tf.GradientTape() as tape:
            loss = discriminator_loss(*judge(real, fake))
        optimizer.minimize(loss, discriminator.trainable_variables, tape=tape)

    ndct, ldct = stream(train, "ndct", 1), stream(train, "ldct", 2)
    for _ in range(steps):
        step(next(ndct), next(ldct))
    ndct, ldct = stream(held_out, "ndct", 3), stream(held_out, "ldct", 4)
    return float(np.mean([judgement(*judge(next(ndct), next(ldct)))["accuracy"] for _ in range(25)]))


def _patch_stream(stack: np.ndarray, path, patch: int, batch: int, seed: int, foreground: float, patch_batches):
    """Patches of a HU stack through the product's patch sampler (via a TFRecord at `path`)."""
    import tensorflow as tf

    from ctdenoise.contract import features
    from ctdenoise.dicomio.reader import SliceRecord

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for i, hu in enumerate(stack):
            record = SliceRecord("x", np.rint(hu).astype(np.int16), None, None, None, None, None)
            writer.write(features.build_example("P", str(i), {"ldct": record}).SerializeToString())
    return patch_batches(
        [str(path)], "ldct", patch, batch, seed=seed, foreground_patches=foreground, foreground_hu=BODY_HU
    )


def main() -> None:
    args = common.parse_args("benchmarks.game", __doc__)
    common.quiet_tensorflow()
    sizes = QUICK if args.quick else FULL
    bench = common.Benchmark(args, "game", "The adversarial game: discriminator accuracy and what the switches change")
    from ctdenoise.trainer_module import hparams as hparams_lib
    from ctdenoise.trainer_module.models import configure

    train_set = datasets.simulated(
        args.data, patients=sizes["train"][0], slices=sizes["train"][1], size=sizes["size"], seed=SEEDS["train"]
    )
    validation = quality_sets.images(
        datasets.simulated(
            args.data,
            patients=sizes["validation"][0],
            slices=sizes["validation"][1],
            size=sizes["size"],
            seed=SEEDS["validation"],
        )
    )
    train_images = quality_sets.images(train_set)
    d_hp = configure(sizes["preset"], [f"batch={sizes['d_batch']}"])
    scratch = args.out / "scratch" / "game"
    shutil.rmtree(scratch, ignore_errors=True)
    variants: dict[str, dict] = {}
    for joint in (False, True):
        for foreground in (0.0, 1.0):
            name = (
                f"D alone, {'joint batch' if joint else 'batches apart (paper)'}, "
                f"{'foreground' if foreground else 'random'} patches"
            )
            accuracy = discriminator_alone(
                train_images, validation, d_hp, sizes["d_steps"], joint, foreground, scratch / "patches"
            )
            variants[name] = {"held_out_accuracy": round(accuracy, 3), "steps": sizes["d_steps"]}
            bench.log(f"{name}: held-out accuracy {accuracy:.3f}")

    examples = datasets.ingested(args.data, train_set)
    generators = {name: (sizes["preset"], PAPER_MECHANICS + overrides) for name, overrides in sizes["variants"].items()}
    models = quality.train_and_export(bench, examples, scratch, generators)
    from benchmarks import classical, quality_scores

    ldct_scores = quality_scores.fidelity(validation.ldct, validation)
    variants["LDCT (as is)"] = {k: round(v, 3) for k, v in ldct_scores.items()}
    for name, model in models.items():
        output = classical.saved_model(model["dir"])(validation.ldct[..., None])[..., 0]
        scores = quality_scores.fidelity(output, validation)
        variants[f"GAN, {name}"] = {
            "final_d_accuracy": model["final_d_accuracy"],
            "body_rmse_ndct_vs_ldct": round(scores["body_rmse_hu_ndct"] / ldct_scores["body_rmse_hu_ndct"], 3),
            "psnr_truth": round(scores["psnr_truth"], 2),
            "body_rmse_hu_truth": round(scores["body_rmse_hu_truth"], 1),
            "train_minutes": model["train_minutes"],
        }
        bench.log(f"{name}: {variants[f'GAN, {name}']}")
    paper, chosen = variants["GAN, paper"], variants[f"GAN, {CHOSEN}"]
    joint_fg = variants["D alone, joint batch, foreground patches"]["held_out_accuracy"]
    apart = variants["D alone, batches apart (paper), random patches"]["held_out_accuracy"]
    bench.finish(
        params={
            "size_px": sizes["size"],
            "dose": datasets.DOSE,
            "preset": sizes["preset"],
            "seeds": SEEDS,
            "validation_slices": len(validation),
            "d_alone_steps": sizes["d_steps"],
        },
        variants=variants,
        ratios=[
            common.Ratio("D alone: held-out accuracy, joint batch + foreground / paper", joint_fg / apart, None),
            common.Ratio(
                "GAN: in-body RMSE vs NDCT, paper / cpu-demo's switches",
                paper["body_rmse_ndct_vs_ldct"] / chosen["body_rmse_ndct_vs_ldct"],
                None,
            ),
        ],
        notes=[
            "Accuracy: the share of logits on the right side of 0.5 (real above, fake below), held-out patches; "
            "0.5 is chance.",
            "body_rmse_ndct_vs_ldct: the generator's in-body RMSE against the NDCT over the LDCT's (below 1 is "
            "better); psnr_truth: whole-slice PSNR against the noise-free truth (LDCT as is: "
            f"{ldct_scores['psnr_truth']:.2f} dB).",
            f"Each GAN variant is a fresh {hparams_lib.schedule(sizes['preset']).total_steps}-step run of the "
            "Trainer's "
            "run_fn on the same data; GAN training "
            "is not bit-reproducible across machines, so expect run-to-run spread.",
        ],
    )


if __name__ == "__main__":
    main()
