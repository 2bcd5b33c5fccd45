"""Training switches on real anatomy: generators trained with a switch on and off, scored on a
real validation patient (docs/design.md, "Training mechanics"). `--switch augment` (the default)
turns patches by flips and 90° rotations; `--switch noise_rescale` redraws each paired patch's
noise at a random scale and sign (paired models only).

    python -m benchmarks.augment [--switch noise_rescale] --real-train ../shared/realct/TCGA-09-2043 \
        [../shared/realct/GE-HEAD] --real-val ../shared/realct/TCGA-E3-A3E5

Data (each source patient is one simulated patient, `simulate --from`):
- training: every slice of the `--real-train` patients, rescanned at doses drawn from
  datasets.REAL_TRAIN_DOSE, ingested by the product's Beam graph, every split trained on;
- validation: slices of the `--real-val` patient spread over its length, at dose 0.25,
  scored against its NDCT (a real source is its own reference). This patient is where the
  product's choices are made; BM3D's strength is tuned on it too (its best shot there);
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
SWITCHES = {
    "augment": {"augment": ["augment=true"], "no augment": ["augment=false"]},
    "noise_rescale": {"noise rescaled x0.5-2": ["noise_rescale=2"], "noise as ingested": ["noise_rescale=1"]},
}
"""Per switch: its setting on, then off (overrides of the preset)."""
PAIRED_ONLY = ("noise_rescale",)
"""Switches that only paired training reads."""
FULL: dict[str, Any] = dict(size=256, val_slices=16, train_slices=None, preset="cpu-demo", seeds=(0, 1, 2))
QUICK: dict[str, Any] = dict(size=64, val_slices=2, train_slices=4, preset="tiny", seeds=(0,))
METRICS = ("psnr_ndct", "ssim_ndct", "body_rmse_hu_ndct", "body_ssim_ndct")
"""The fidelity scores (`quality_scores.fidelity` against the NDCT) averaged over the seeds."""


def main() -> None:
    args = common.parse_args("benchmarks.augment", __doc__, _options)
    common.quiet_tensorflow()
    sizes = QUICK if args.quick else FULL
    switch = args.switch
    bench = common.Benchmark(
        args, _result_name(switch), f"Training switch `{switch}` on real anatomy (validation patient)"
    )
    train = quality_sets.real_training_set(
        args.data, args.real_train, slices=sizes["train_slices"], size=sizes["size"], seed=10
    )
    val_set = datasets.simulated(
        args.data, patients=1, slices=sizes["val_slices"], size=sizes["size"], seed=11, from_dir=args.real_val
    )
    validation = quality_sets.images(val_set)
    examples, val_examples = datasets.ingested(args.data, train), datasets.ingested(args.data, val_set)
    scratch = args.out / "scratch" / _result_name(switch)
    shutil.rmtree(scratch, ignore_errors=True)  # never resume from an earlier benchmark run

    variants: dict[str, dict] = {}
    for name, denoise in _references(bench, validation).items():
        variants[name] = quality_scores.fidelity(denoise, validation, against=("ndct",))
    per_seed: dict[str, list[dict]] = {}
    models = {name: MODELS[name] for name in args.models if name == "paired" or switch not in PAIRED_ONLY}
    for model, overrides in models.items():
        for setting, values in SWITCHES[switch].items():
            runs = {
                f"{model}, {setting}, seed {seed}": (sizes["preset"], [*overrides, *values, f"seed={seed}"])
                for seed in sizes["seeds"]
            }
            trained = quality.train_and_export(bench, examples, scratch, runs, val_examples, len(validation))
            scores = []
            for run, info in trained.items():
                output = classical.saved_model(info["dir"])(validation.ldct[..., None])[..., 0]
                scores.append(quality_scores.fidelity(output, validation, against=("ndct",)))
                bench.log(
                    f"{run}: {scores[-1]['psnr_ndct']:.2f} dB, body RMSE {scores[-1]['body_rmse_hu_ndct']:.2f} HU "
                    "vs NDCT"
                )
            per_seed[f"{model}, {setting}"] = scores
            variants[f"{model}, {setting}"] = _mean_and_spread(scores)
    bench.finish(
        params={
            "switch": switch,
            "size_px": sizes["size"],
            "preset": sizes["preset"],
            "seeds": list(sizes["seeds"]),
            "train": f"{' + '.join(f.name for f in args.real_train)}, {train.files // 2} slices, "
            f"dose {datasets.REAL_TRAIN_DOSE}",
            "validation": f"{Path(args.real_val).name}, {len(validation)} slices, dose {datasets.DOSE}",
        },
        variants=variants,
        ratios=_ratios(switch, models, per_seed, variants),
        notes=_notes(sizes),
        extra={"per_seed": per_seed},
    )


def _result_name(switch: str) -> str:
    """`augment` keeps its result's name; another switch's is `augment_<switch>`."""
    return "augment" if switch == "augment" else f"augment_{switch}"


def _options(parser) -> None:
    parser.add_argument(
        "--switch", choices=SWITCHES, default="augment", help="which switch to compare (default augment)"
    )
    parser.add_argument(
        "--real-train", type=Path, nargs="+", required=True, help="folders of the real training patients"
    )
    parser.add_argument("--real-val", type=Path, required=True, help="folder of the real validation patient")
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), help="which generators to train (default all)"
    )


def _references(bench: common.Benchmark, validation: quality_sets.Images) -> dict[str, np.ndarray]:
    """The LDCT as it is, the NDCT, and BM3D at its best strength on this patient."""
    chosen = quality.tune(bench, validation, {"BM3D": quality.TUNING["BM3D"]}, quality.BODY_RMSE, reference="ndct")
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
    switch: str, models: dict[str, list[str]], per_seed: dict[str, list[dict]], variants: dict[str, dict]
) -> list[common.Ratio]:
    """The switch's gain per model (mean over seeds), and each generator with it on against BM3D."""
    bm3d = next(v for name, v in variants.items() if name.startswith("BM3D"))
    on_name, off_name = SWITCHES[switch]
    ratios = []
    for model in models:
        on, off = variants[f"{model}, {on_name}"], variants[f"{model}, {off_name}"]
        seeds = len(per_seed[f"{model}, {on_name}"])
        ratios += [
            common.Ratio(
                f"{model}: {off_name} / {on_name} in-body RMSE vs NDCT (mean of {seeds} seeds)",
                off["body_rmse_hu_ndct"] / on["body_rmse_hu_ndct"],
                None,
            ),
            common.Ratio(
                f"{model}: {on_name} - {off_name}, PSNR vs NDCT", on["psnr_ndct"] - off["psnr_ndct"], None, "dB"
            ),
            common.Ratio(
                f"{model}, {on_name}: BM3D / generator in-body RMSE vs NDCT, validation patient",
                bm3d["body_rmse_hu_ndct"] / on["body_rmse_hu_ndct"],
                None,
            ),
        ]
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
