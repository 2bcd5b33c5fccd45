"""Quality on real anatomy (v3): every model of the family trained on one real patient, every
choice made on a second, and all of them scored on a third set that nothing is tuned on, beside
Gaussian, NLM, BM3D and BM3D given the noise's power spectrum (docs/design.md, "Measuring denoising quality").

    python -m benchmarks.quality_real --real-train ../shared/realct/TCGA-09-2043 \
        --real-val ../shared/realct/TCGA-E3-A3E5 --budget cpu-demo [--models red_cnn,cyclegan]

`--models` trains only the rows named (the classical rows always run), for a machine without
the hours that every model at three seeds takes; the result says which rows did not run.

Data (each source patient is one simulated patient, `simulate --from`, at SIZE px):
- train: every slice of the `--real-train` patient rescanned at doses drawn per slice from
  `datasets.REAL_TRAIN_DOSE`, ingested by the product's Beam graph; BM3D's noise spectrum is
  estimated from its LDCT − NDCT;
- validate: VAL_SLICES slices of the `--real-val` patient spread over its length, at dose
  0.25. Every classical strength, the spectrum's scale, and which unpaired model gets the
  extra seeds are chosen here and only here;
- test: the clinical slices shipped with pydicom (`quality_sets.real_anatomy`) at dose 0.25,
  never tuned on; and the QA phantom for noise, noise texture (NPS) and sharpness (MTF50).

The phantom table stays `benchmarks.quality`. Each generator is trained by the Trainer's own
`run_fn` at the `--budget` preset; the paired models (RED-CNN, whose targets these are, and the
hybrid that README recommends for paired data) and the unpaired model that scores best on the
validation patient for every seed of HEADLINE_SEEDS, reported as the mean with the spread
(largest minus smallest) beside it; the other unpaired model for the first seed only.
"""

from __future__ import annotations

import argparse
import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import classical, common, datasets, quality, quality_scores, quality_sets
from ctdenoise.trainer_module import hparams

SIZE, VAL_SLICES, QA_SCANS = 256, 12, 8
SEEDS = {"train": 10, "val": 11, "test": 13, "qa": 14}
"""Simulation seeds: the same train and validation rescans as `benchmarks.augment`, the same
test slices as `benchmarks.quality`."""
HEADLINE_SEEDS = (0, 1, 2)
PAIRED = {"red_cnn": quality.PAIRED, "hybrid": quality.HYBRID + quality.NO_TANH}
UNPAIRED = {"cycle_identity": [], "cyclegan": ["model=cyclegan"]}
"""Row → overrides of the budget preset: each model of the family at its preset size
(each model's params.CPU_SIZES), hybrid the cycle-identity CycleGAN plus the supervised term."""
ROWS = {**PAIRED, **UNPAIRED}
"""Every row `--models` may name, paired first."""
PSD_TUNING = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]
"""BM3D-with-spectrum strengths: multiples of the slice's noise level (`classical.noise_sigma`), 1 being
the level as measured; chosen on the validation patient."""
QUICK: dict[str, Any] = dict(val_slices=2, train_slices=3, qa_scans=2, seeds=(0,), preset="tiny")


def main() -> None:
    args = common.parse_args("benchmarks.quality_real", __doc__, _options)
    common.quiet_tensorflow()
    quick = args.quick
    preset = QUICK["preset"] if quick else args.budget
    bench = common.Benchmark(args, "quality_real", f"Quality on real anatomy, dose {datasets.DOSE} ({preset})")
    train = datasets.simulated(
        args.data,
        patients=1,
        slices=QUICK["train_slices"] if quick else None,
        size=SIZE,
        seed=SEEDS["train"],
        from_dir=args.real_train,
        dose=datasets.REAL_TRAIN_DOSE,
    )
    val = datasets.simulated(
        args.data,
        patients=1,
        slices=QUICK["val_slices"] if quick else VAL_SLICES,
        size=SIZE,
        seed=SEEDS["val"],
        from_dir=args.real_val,
    )
    sets = {"val": quality_sets.images(val), "test": quality_sets.real_anatomy(args.data, SIZE, SEEDS["test"])}
    qa = quality_sets.qa_scans(SIZE, QUICK["qa_scans"] if quick else QA_SCANS, SEEDS["qa"])
    train_images = quality_sets.images(train)

    psd = classical.noise_psd(train_images.ldct, train_images.ndct)
    tuning = {**quality.TUNING, "BM3D with noise spectrum": (lambda c: classical.bm3d_psd(psd, c), PSD_TUNING)}
    chosen = quality.tune(bench, sets["val"], tuning)
    methods = _classical_methods(chosen, tuning)
    variants = {name: _scores(run, sets, qa) for name, run in methods.items()}

    examples = datasets.ingested(args.data, train)
    scratch = args.out / "scratch" / "quality_real"
    shutil.rmtree(scratch, ignore_errors=True)  # never resume from an earlier benchmark run
    seeds = QUICK["seeds"] if quick else HEADLINE_SEEDS
    rows = _rows(args)
    runs = _Runs(bench, preset, examples, scratch, sets, qa)
    for row, overrides in rows.items():
        runs.train(row, overrides, seeds if row in PAIRED else seeds[:1])
    unpaired = _best_unpaired(runs, rows)
    if unpaired is not None:
        bench.log(f"best unpaired model on the validation patient: {unpaired}")
        runs.train(unpaired, rows[unpaired], seeds[1:])
    per_seed, training = runs.per_seed, runs.training
    for row, scores in per_seed.items():
        variants[f"{row} ({_kind(row)}, {preset})"] = {
            **_mean(scores),
            "seeds": len(scores),
            "spread": _spread(scores),
            "training": training[row],
        }
    for row in ROWS:
        if row not in rows:
            variants[f"{row} ({_kind(row)}, {preset})"] = {"not_run": "not among this run's --models"}
    if args.vgg_weights is None:
        variants[f"wgan_vgg (paired, {preset})"] = {"not_run": "no VGG19 weights file: pass --vgg-weights FILE"}

    ldct = variants["LDCT (as is)"]
    bm3d_psd = next(name for name in variants if name.startswith("BM3D with noise spectrum"))
    test = sets["test"]
    panel = {name: test.ndct if run is None else run(test.ldct) for name, run in methods.items()}
    quality._panel(args.out / "quality_real_panel.png", {**panel, **runs.first_test_output}, test)
    bench.finish(
        params={
            "size_px": SIZE,
            "dose": datasets.DOSE,
            "preset": preset,
            "steps": hparams.schedule(preset).total_steps,
            "seeds": list(seeds),
            "qa_scans": len(qa.ldct),
            "train": f"{Path(args.real_train).name}, {train.files // 2} slices, dose {datasets.REAL_TRAIN_DOSE}",
            "validation": f"{Path(args.real_val).name}, {len(sets['val'])} slices",
            "test": f"{len(sets['test'])} clinical slices shipped with pydicom",
            "best_unpaired_on_validation": unpaired or "none trained (--models)",
            "tuned": {name: {"chosen": c, "psnr_truth_by_candidate": p} for name, (c, p) in chosen.items()},
            "tables": {
                "test": "Test: real anatomy nothing was tuned on (the pydicom clinical slices)",
                "val": "Validation patient (where every choice was made)",
            },
        },
        variants=variants,
        ratios=_targets(variants, ldct, bm3d_psd, unpaired, preset),
        figures=["quality_real_panel.png"],
        notes=_notes(preset, seeds),
        extra={"per_seed": per_seed},
    )


def _options(parser) -> None:
    parser.add_argument("--real-train", type=Path, required=True, help="folder of the real training patient")
    parser.add_argument("--real-val", type=Path, required=True, help="folder of the real validation patient")
    parser.add_argument("--budget", default="cpu-demo", help="training preset of every model (default cpu-demo)")
    parser.add_argument(
        "--models",
        type=_model_list,
        default=list(ROWS),
        help=f"comma-separated rows to train, of {', '.join(ROWS)} (default all); "
        "the others get a row saying they were not run, and their targets are left out",
    )
    parser.add_argument(
        "--vgg-weights",
        type=Path,
        default=None,
        help="VGG19 Keras weights file for wgan_vgg's perceptual loss (without it wgan_vgg is not run)",
    )


def _model_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"takes names of {', '.join(ROWS)}, got {text!r}")
    return names


def _rows(args) -> dict[str, list[str]]:
    rows = {name: overrides for name, overrides in ROWS.items() if name in args.models}
    if args.vgg_weights is not None:
        rows["wgan_vgg"] = ["model=wgan_vgg", f"vgg_weights={args.vgg_weights}"]
    return rows


def _best_unpaired(runs: _Runs, rows: dict[str, list[str]]) -> str | None:
    """The unpaired row with the best PSNR against the truth on the validation patient (first
    seed), which gets the other seeds; None when this run trains no unpaired model."""
    trained = [row for row in UNPAIRED if row in rows]
    return max(trained, key=lambda row: runs.per_seed[row][0]["val"]["psnr_truth"]) if trained else None


def _kind(row: str) -> str:
    return "unpaired" if row in UNPAIRED else "paired"


def _classical_methods(chosen: dict, tuning: dict) -> dict[str, Callable[[np.ndarray], np.ndarray] | None]:
    """Name → function from a stack of LDCT slices to its denoised stack (the NDCT row returns
    the NDCT of the set it is given, see `_scores`)."""
    methods: dict[str, Callable | None] = {"LDCT (as is)": lambda stack: stack, "NDCT (reference)": None}
    for name, (make, _) in tuning.items():
        methods[f"{name} (tuned {chosen[name][0]:g})"] = functools.partial(quality.apply, make(chosen[name][0]))
    return methods


def _scores(run: Callable | None, sets: dict[str, quality_sets.Images], qa: quality_sets.QAScans) -> dict:
    """Fidelity on each set, error by region and the gate on the test slices, and the QA
    phantom's measures, of one method (None: the NDCT itself)."""
    outputs = {key: images.ndct if run is None else run(images.ldct) for key, images in sets.items()}
    scores = {key: quality_scores.fidelity(out, sets[key]) for key, out in outputs.items()}
    scores["regions"] = quality_scores.region_errors(outputs["test"], sets["test"])
    scores["gate"] = quality._default_gate(outputs["test"], sets["test"])
    scores["qa"] = quality_scores.qa(qa.ndct if run is None else run(qa.ldct), qa)
    return scores


class _Runs:
    """Trains rows seed by seed and keeps each run's scores, its training record, and each
    row's first test output (for the panel)."""

    def __init__(
        self,
        bench: common.Benchmark,
        preset: str,
        examples: Path,
        scratch: Path,
        sets: dict[str, quality_sets.Images],
        qa: quality_sets.QAScans,
    ):
        self.bench, self.preset, self.examples, self.scratch, self.sets, self.qa = (
            bench,
            preset,
            examples,
            scratch,
            sets,
            qa,
        )
        self.per_seed: dict[str, list[dict]] = {}
        self.training: dict[str, list[dict]] = {}
        self.first_test_output: dict[str, np.ndarray] = {}

    def train(self, row: str, overrides: list[str], seeds) -> None:
        runs = {f"{row}, seed {seed}": (self.preset, [*overrides, f"seed={seed}"]) for seed in seeds}
        for name, info in quality.train_and_export(self.bench, self.examples, self.scratch, runs).items():
            serve = classical.saved_model(info["dir"])
            denoise = functools.partial(quality.served, serve)
            scores = _scores(denoise, self.sets, self.qa)
            self.per_seed.setdefault(row, []).append(scores)
            self.training.setdefault(row, []).append({k: v for k, v in info.items() if k not in ("dir", "overrides")})
            self.first_test_output.setdefault(row, denoise(self.sets["test"].ldct))
            self.bench.log(
                f"{name}: test vs truth {scores['test']['psnr_truth']:.2f} dB, validation "
                f"{scores['val']['psnr_truth']:.2f} dB"
            )


def _flat(scores: dict) -> dict[tuple[str, str], float]:
    return {(group, key): float(value) for group, values in scores.items() for key, value in values.items()}


def _mean(runs: list[dict]) -> dict:
    """Each score's mean over the seeds, in the scores' own shape (`blessed` becomes the share
    of seeds blessed)."""
    flats = [_flat(run) for run in runs]
    out: dict[str, dict] = {}
    for group, key in flats[0]:
        out.setdefault(group, {})[key] = float(np.mean([flat[(group, key)] for flat in flats]))
    return out


SPREAD = (("test", "psnr_truth"), ("test", "ssim_truth"), ("test", "body_rmse_hu_truth"), ("val", "psnr_truth"))


def _spread(runs: list[dict]) -> dict[str, float]:
    """Largest minus smallest over the seeds of the figures a choice rests on."""
    return {f"{group}.{key}": float(np.ptp([run[group][key] for run in runs])) for group, key in SPREAD}


def _targets(variants: dict, ldct: dict, bm3d_psd: str, unpaired: str | None, preset: str) -> list[common.Ratio]:
    """The issue's targets on the test slices, each higher-is-better against its bound; those of
    a model this run did not train are left out."""
    ndct, bm3d = variants["NDCT (reference)"], variants[bm3d_psd]
    red = variants[f"red_cnn (paired, {preset})"]
    targets = (
        []
        if "not_run" in red
        else [
            common.Ratio(
                f"red_cnn - BM3D with noise spectrum, PSNR vs truth (mean of {red['seeds']} seeds)",
                red["test"]["psnr_truth"] - bm3d["test"]["psnr_truth"],
                1.0,
                "dB",
            ),
            common.Ratio(
                "red_cnn: MTF50 / NDCT's MTF50 (QA rods)",
                quality_scores.mean_mtf50(red["qa"]) / quality_scores.mean_mtf50(ndct["qa"]),
                0.9,
            ),
        ]
    )
    if unpaired is None:
        return targets
    best = variants[f"{unpaired} (unpaired, {preset})"]
    nps_ndct = ndct["qa"]["nps_mean_frequency"]
    return targets + [
        common.Ratio(
            f"{unpaired} (best unpaired) - BM3D with noise spectrum, PSNR vs truth (mean of {best['seeds']} seeds)",
            best["test"]["psnr_truth"] - bm3d["test"]["psnr_truth"],
            -0.5,
            "dB",
        ),
        common.Ratio(
            f"{unpaired}: 1 - |NPS mean frequency / NDCT's - 1| (within 10 %: at least 0.9)",
            1 - abs(best["qa"]["nps_mean_frequency"] / nps_ndct - 1),
            0.9,
        ),
        common.Ratio(
            f"{unpaired}: LDCT / model in-body RMSE vs truth (at most 0.8x the LDCT's: at least 1.25)",
            ldct["test"]["body_rmse_hu_truth"] / best["test"]["body_rmse_hu_truth"],
            1.25,
        ),
        common.Ratio(
            f"{unpaired}: share of seeds the default gate blesses on the test slices", best["gate"]["blessed"], None
        ),
    ]


def _notes(preset: str, seeds) -> list[str]:
    return [
        f"Models: each trained at the `{preset}` preset by the Trainer's run_fn; the paired models and the best "
        f"unpaired model for seeds {', '.join(map(str, seeds))} (columns are means, `spread` is the largest minus the "
        "smallest seed's value), the others for the first seed only.",
        "Fidelity: the product's metric table (docs/design.md, 'Pipeline metrics and the blessing gate') "
        "against the noise-free truth and the NDCT; "
        "regions, NPS and MTF50 as in the quality benchmark.",
        "BM3D with noise spectrum: the `bm3d` package given the 2-D power spectrum of the training patient's "
        "LDCT - NDCT (unit variance), scaled per slice by the strength × the slice's noise level (the models' "
        "input); the strength of every classical method is the one with the best PSNR against the truth on the "
        "validation patient.",
        "Training ran in this process while the machine may have been shared: training minutes are indicative.",
    ]


if __name__ == "__main__":
    main()
