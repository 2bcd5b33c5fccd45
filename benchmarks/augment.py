"""Augmentation on real anatomy: generators trained with and without flips and 90° rotations of
their patches (`augment`, docs/design.md, "Training mechanics"), scored on a real validation patient.

    python -m benchmarks.augment --real-train ../shared/realct/TCGA-09-2043 \
        --real-val ../shared/realct/TCGA-E3-A3E5

Data (each source patient is one simulated patient, `simulate --from`):
- training: every slice of the `--real-train` patient, rescanned at doses drawn from
  datasets.REAL_TRAIN_DOSE, ingested by the product's Beam graph;
- validation: slices of the `--real-val` patient spread over its length, at dose 0.25,
  scored against their noise-free truth and the NDCT. This patient is where the product's
  choices are made; BM3D's strength is tuned on it too (its best shot there);
- the pydicom slices, the quality benchmark's real-anatomy test set, are not used.

Each generator is trained by the Trainer's own `run_fn` for every seed of SEEDS, so the
difference is reported with its spread across seeds.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import classical, common, datasets, quality, quality_scores, quality_sets
from ctdenoise.contract.hu import BODY_HU, HU_MAX, HU_MIN

MODELS = {"unpaired": [], "paired": quality.PAIRED}
"""The paper's CycleGAN, and RED-CNN on co-located patches (the quality benchmark's two
headline configurations)."""
SWITCH = {"augment": ["augment=true"], "no augment": ["augment=false"]}
FULL: dict[str, Any] = dict(size=256, val_slices=16, train_slices=None, preset="cpu-demo", seeds=(0, 1))
QUICK: dict[str, Any] = dict(size=64, val_slices=2, train_slices=4, preset="tiny", seeds=(0,))
METRICS = ("psnr_truth", "ssim_truth", "psnr_ndct", "body_rmse_hu_truth", "body_rmse_hu_ndct")
"""The fidelity scores (`quality_scores.fidelity`) averaged over the seeds."""


def main() -> None:
    args = common.parse_args("benchmarks.augment", __doc__, _options)
    common.quiet_tensorflow()
    sizes = QUICK if args.quick else FULL
    bench = common.Benchmark(args, "augment", "Augmentation on real anatomy (validation patient)")
    train = datasets.simulated(
        args.data,
        patients=1,
        slices=sizes["train_slices"],
        size=sizes["size"],
        seed=10,
        from_dir=args.real_train,
        dose=datasets.REAL_TRAIN_DOSE,
    )
    val_set = datasets.simulated(
        args.data, patients=1, slices=sizes["val_slices"], size=sizes["size"], seed=11, from_dir=args.real_val
    )
    validation = quality_sets.images(val_set)
    examples = datasets.ingested(args.data, train)
    scratch = args.out / "scratch" / "augment"
    shutil.rmtree(scratch, ignore_errors=True)  # never resume from an earlier benchmark run

    variants: dict[str, dict] = {}
    for name, denoise in _references(bench, validation).items():
        variants[name] = quality_scores.fidelity(denoise, validation)
    per_seed: dict[str, list[dict]] = {}
    models = {name: MODELS[name] for name in args.models}
    for model, overrides in models.items():
        for switch, values in SWITCH.items():
            runs = {
                f"{model}, {switch}, seed {seed}": (sizes["preset"], [*overrides, *values, f"seed={seed}"])
                for seed in sizes["seeds"]
            }
            trained = quality.train_and_export(bench, examples, scratch, runs)
            scores = []
            for run, info in trained.items():
                output = classical.saved_model(info["dir"])(validation.ldct[..., None])[..., 0]
                scores.append(quality_scores.fidelity(output, validation))
                bench.log(
                    f"{run}: vs truth {scores[-1]['psnr_truth']:.2f} dB, "
                    f"body RMSE vs NDCT {scores[-1]['body_rmse_hu_ndct']:.1f} HU"
                )
            per_seed[f"{model}, {switch}"] = scores
            variants[f"{model}, {switch}"] = _mean_and_spread(scores)
    bench.finish(
        params={
            "size_px": sizes["size"],
            "preset": sizes["preset"],
            "seeds": list(sizes["seeds"]),
            "train": f"{Path(args.real_train).name}, {train.files // 2} slices, dose {datasets.REAL_TRAIN_DOSE}",
            "validation": f"{Path(args.real_val).name}, {len(validation)} slices, dose {datasets.DOSE}",
        },
        variants=variants,
        ratios=_ratios(models, per_seed, variants),
        notes=_notes(sizes),
        extra={"per_seed": per_seed},
    )


def _options(parser) -> None:
    parser.add_argument("--real-train", type=Path, required=True, help="folder of the real training patient")
    parser.add_argument("--real-val", type=Path, required=True, help="folder of the real validation patient")
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), help="which generators to train (default all)"
    )


def _references(bench: common.Benchmark, validation: quality_sets.Images) -> dict[str, np.ndarray]:
    """The LDCT as it is, the NDCT, and BM3D at its best strength on this patient."""
    chosen = quality.tune(bench, validation, {"BM3D": quality.TUNING["BM3D"]})
    make, _ = quality.TUNING["BM3D"]
    strength = chosen["BM3D"][0]
    return {
        "LDCT (as is)": validation.ldct,
        "NDCT (reference)": validation.ndct,
        f"BM3D (tuned {strength:g})": quality.apply(make(strength), validation.ldct),
    }


def _mean_and_spread(scores: list[dict]) -> dict[str, float]:
    """Each metric's mean over the seeds and its spread (max - min)."""
    out = {}
    for key in METRICS:
        values = [s[key] for s in scores]
        out[key] = float(np.mean(values))
        out[f"{key}_spread"] = float(np.max(values) - np.min(values))
    return out


def _ratios(
    models: dict[str, list[str]], per_seed: dict[str, list[dict]], variants: dict[str, dict]
) -> list[common.Ratio]:
    """Augmentation's gain per model (mean over seeds), and each generator against BM3D."""
    bm3d = next(v for name, v in variants.items() if name.startswith("BM3D"))
    ratios = []
    for model in models:
        on, off = variants[f"{model}, augment"], variants[f"{model}, no augment"]
        ratios.append(
            common.Ratio(
                f"{model}: augment - no augment, PSNR vs truth (mean of {len(per_seed[f'{model}, augment'])} seeds)",
                on["psnr_truth"] - off["psnr_truth"],
                None,
                "dB",
            )
        )
        ratios.append(
            common.Ratio(
                f"{model}: no augment / augment in-body RMSE vs truth",
                off["body_rmse_hu_truth"] / on["body_rmse_hu_truth"],
                None,
            )
        )
        ratios.append(
            common.Ratio(
                f"{model}, augment: generator - BM3D, PSNR vs truth, validation patient",
                on["psnr_truth"] - bm3d["psnr_truth"],
                None,
                "dB",
            )
        )
    return ratios


def _notes(sizes: dict) -> list[str]:
    return [
        "Columns are means over the seeds; *_spread is the largest minus the smallest seed's value. "
        "A difference smaller than the spreads is within run-to-run variation.",
        f"Generators: the `{sizes['preset']}` preset, with quality.PAIRED ({' '.join(quality.PAIRED)}) for paired; "
        "fidelity by the product's metric table (docs/design.md, 'Pipeline metrics and the blessing gate'): "
        f"psnr/ssim on HU clipped to [{HU_MIN:g}, {HU_MAX:g}] "
        f"scaled to [-1, 1]; body_rmse_hu pooled in HU inside the reference's body (> {BODY_HU:g} HU).",
        "BM3D's strength is tuned on the validation patient itself (white-noise sigma as a multiple of the slice's "
        "noise estimate): a reference at its best on these slices, not a held-out score.",
        "Training ran in this process while the machine may have been shared: no timing is reported.",
    ]


if __name__ == "__main__":
    main()
