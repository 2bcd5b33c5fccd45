"""Quality on real anatomy (v4): every model of the family trained on real patients (a head among
them), every choice made on another, and all of them scored on a third set that nothing is tuned
on, beside Gaussian, NLM, BM3D and BM3D given the noise's power spectrum (docs/design.md,
"Measuring denoising quality").

    python -m benchmarks.quality_real --real-train ../shared/realct/TCGA-09-2043 ../shared/realct/GE-HEAD \
        --real-val ../shared/realct/TCGA-E3-A3E5 --budget cpu-demo [--models red_cnn,cyclegan]

`--models` trains only the rows named (the classical rows always run), for a machine without
the hours that every model at three seeds takes; the result says which rows did not run.

Data (each source patient is one simulated patient, `simulate --from`, at SIZE px). A real
source is its own NDCT, and its LDCT is the source with the noise of the lower dose inserted
(docs/design.md, "Noise insertion for real sources"): there is no noise-free truth, and every
real set is scored against its NDCT, as on the Mayo quarter-dose data.
- train: every slice of the `--real-train` patients rescanned at doses drawn per slice from
  `datasets.REAL_TRAIN_DOSE`, ingested by the product's Beam graph, every split trained on;
  BM3D's noise spectrum is estimated from its LDCT − NDCT;
- validate: VAL_SLICES slices of the `--real-val` patient spread over its length, at dose
  0.25. Every classical strength (by in-body RMSE) and the best paired model are chosen here
  and only here, and each model's training curve (in-body RMSE at every summary) is read here;
- test: the clinical slices shipped with pydicom (`quality_sets.real_anatomy`) at dose 0.25,
  never tuned on; and the QA phantom, which keeps its truth, for noise texture (NPS) and
  sharpness (MTF50).

Headline: in-body RMSE against the NDCT (the metric table's `body_rmse_hu`), the band around the
body's outline beside it (error by region), NPS and MTF50; whole-slice PSNR and SSIM are secondary
columns. Every model row is trained by the Trainer's own `run_fn` at the `--budget` preset for each
seed of SEEDS_PER_ROW and reported as the mean, the spread (largest minus smallest) beside it.
Time to quality: the training minutes until a model's in-body RMSE on the validation patient first
matches BM3D-with-spectrum's there, read from the Trainer's validation curve.
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
"""Simulation seeds: the same validation rescan as `benchmarks.augment`, the same test slices as
`benchmarks.quality`."""
SEEDS_PER_ROW = (0, 1, 2)
PAIRED = {"red_cnn": quality.PAIRED, "hybrid": quality.HYBRID + quality.NO_TANH}
UNPAIRED = {"cycle_identity": [], "cyclegan": ["model=cyclegan"]}
"""Row → overrides of the budget preset: each model of the family at its preset size
(each model's params.CPU_SIZES), hybrid the cycle-identity CycleGAN plus the supervised term."""
ROWS = {**PAIRED, **UNPAIRED}
"""Every row `--models` may name, paired first."""
DEFAULT_UNPAIRED = hparams.DEFAULT_MODEL
PSD_TUNING = [0.5, 0.75, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0]
"""BM3D-with-spectrum strengths: multiples of the slice's noise level (`classical.noise_sigma`), 1 being
the level as measured; chosen on the validation patient."""
IN_BODY = ("body_rmse_hu_ndct", "in-body RMSE against the NDCT (HU)")
QUICK: dict[str, Any] = dict(val_slices=2, train_slices=3, qa_scans=2, seeds=(0,), preset="tiny")


def main() -> None:
    args = common.parse_args("benchmarks.quality_real", __doc__, _options)
    common.quiet_tensorflow()
    quick = args.quick
    preset = QUICK["preset"] if quick else args.budget
    bench = common.Benchmark(args, "quality_real", f"Quality on real anatomy, dose {datasets.DOSE} ({preset})")
    train = quality_sets.real_training_set(
        args.data, args.real_train, slices=QUICK["train_slices"] if quick else None, size=SIZE, seed=SEEDS["train"]
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
    chosen = quality.tune(bench, sets["val"], tuning, quality.BODY_RMSE, reference="ndct")
    methods = _classical_methods(chosen, tuning)
    ldct_slices = quality_scores.body_rmse_by_slice(sets["test"].ldct, sets["test"])
    variants = {name: method_scores(run, sets, qa, ldct_slices) for name, run in methods.items()}
    bm3d_psd = next(name for name in variants if name.startswith("BM3D with noise spectrum"))
    bm3d_val = variants[bm3d_psd]["val"][IN_BODY[0]]

    scratch = args.out / "scratch" / "quality_real"
    shutil.rmtree(scratch, ignore_errors=True)  # never resume from an earlier benchmark run
    seeds = QUICK["seeds"] if quick else SEEDS_PER_ROW
    rows = _rows(args)
    runs = Runs(
        bench,
        preset,
        datasets.ingested(args.data, train),
        datasets.ingested(args.data, val),
        scratch,
        sets,
        qa,
        ldct_slices,
    )
    for row, overrides in rows.items():
        runs.train(row, overrides, seeds)
    for row, scores in runs.per_seed.items():
        variants[_label(row, preset)] = trained_row(scores, runs.training[row], bm3d_val)
    for row in ROWS:
        if row not in rows:
            variants[_label(row, preset)] = {"not_run": "not among this run's --models"}
    if args.vgg_weights is None:
        variants[f"wgan_vgg (paired, {preset})"] = {"not_run": "no VGG19 weights file: pass --vgg-weights FILE"}

    paired = _best_paired(variants, preset)
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
            "train": f"{' + '.join(f.name for f in args.real_train)}, {train.files // 2} slices, "
            f"dose {datasets.REAL_TRAIN_DOSE}",
            "validation": f"{Path(args.real_val).name}, {len(sets['val'])} slices",
            "test": f"{len(test)} clinical slices shipped with pydicom",
            "reference": "real sets: the NDCT (the source as scanned); QA phantom: its noise-free truth",
            "best_paired_on_validation": paired or "none trained (--models)",
            "bm3d_with_spectrum_val_body_rmse_hu": bm3d_val,
            "tuned": {name: {"chosen": c, "body_rmse_hu_ndct_by_candidate": s} for name, (c, s) in chosen.items()},
            "tables": {
                "test": "Test: real anatomy nothing was tuned on (the pydicom clinical slices)",
                "val": "Validation patient (where every choice was made)",
            },
        },
        variants=variants,
        ratios=_targets(variants, bm3d_psd, paired, preset, len(test)),
        figures=["quality_real_panel.png"],
        notes=_notes(preset, seeds),
        extra={"per_seed": runs.per_seed},
    )


def _options(parser) -> None:
    parser.add_argument(
        "--real-train", type=Path, nargs="+", required=True, help="folders of the real training patients"
    )
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


def _label(row: str, preset: str) -> str:
    return f"{row} ({'unpaired' if row in UNPAIRED else 'paired'}, {preset})"


def _best_paired(variants: dict, preset: str) -> str | None:
    """The paired row with the lowest in-body RMSE on the validation patient (mean over its seeds);
    None when this run trains no paired model."""
    trained = [row for row in (*PAIRED, "wgan_vgg") if "val" in variants.get(_label(row, preset), {})]
    return min(trained, key=lambda row: variants[_label(row, preset)]["val"][IN_BODY[0]]) if trained else None


def _classical_methods(chosen: dict, tuning: dict) -> dict[str, Callable[[np.ndarray], np.ndarray] | None]:
    """Name → function from a stack of LDCT slices to its denoised stack (the NDCT row returns
    the NDCT of the set it is given, see `_scores`)."""
    methods: dict[str, Callable | None] = {"LDCT (as is)": lambda stack: stack, "NDCT (reference)": None}
    for name, (make, _) in tuning.items():
        methods[f"{name} (tuned {chosen[name][0]:g})"] = functools.partial(quality.apply, make(chosen[name][0]))
    return methods


def method_scores(
    run: Callable | None, sets: dict[str, quality_sets.Images], qa: quality_sets.QAScans, ldct_slices: list[float]
) -> dict:
    """Fidelity against the NDCT on each set, error by region, slices made worse than their LDCT
    and the gate on the test slices, and the QA phantom's measures, of one method (None: the
    NDCT itself)."""
    outputs = {key: images.ndct if run is None else run(images.ldct) for key, images in sets.items()}
    scores = {key: quality_scores.fidelity(out, sets[key], against=("ndct",)) for key, out in outputs.items()}
    scores["regions"] = quality_scores.region_errors(outputs["test"], sets["test"])
    by_slice = quality_scores.body_rmse_by_slice(outputs["test"], sets["test"])
    scores["test"]["slices_worse_than_ldct"] = float(sum(m > x for m, x in zip(by_slice, ldct_slices, strict=True)))
    scores["gate"] = quality._default_gate(outputs["test"], sets["test"])
    scores["qa"] = quality_scores.qa(qa.ndct if run is None else run(qa.ldct), qa)
    return scores


class Runs:
    """Trains rows seed by seed (each from `base_model` where one is given) and keeps each run's
    scores, its training record (with its validation curve), and each row's first test output
    (for the panel)."""

    def __init__(
        self,
        bench: common.Benchmark,
        preset: str,
        examples: Path,
        validation: Path,
        scratch: Path,
        sets: dict[str, quality_sets.Images],
        qa: quality_sets.QAScans,
        ldct_slices: list[float],
        base_model: Path | None = None,
    ):
        self.bench, self.preset, self.examples, self.validation = bench, preset, examples, validation
        self.scratch, self.sets, self.qa, self.ldct_slices = scratch, sets, qa, ldct_slices
        self.base_model = base_model
        self.per_seed: dict[str, list[dict]] = {}
        self.training: dict[str, list[dict]] = {}
        self.first_test_output: dict[str, np.ndarray] = {}

    def train(self, row: str, overrides: list[str], seeds) -> None:
        runs = {f"{row}, seed {seed}": (self.preset, [*overrides, f"seed={seed}"]) for seed in seeds}
        trained = quality.train_and_export(
            self.bench, self.examples, self.scratch, runs, self.validation, len(self.sets["val"]), self.base_model
        )
        for name, info in trained.items():
            serve = classical.saved_model(info["dir"])
            denoise = functools.partial(quality.served, serve)
            scores = method_scores(denoise, self.sets, self.qa, self.ldct_slices)
            self.per_seed.setdefault(row, []).append(scores)
            self.training.setdefault(row, []).append({k: v for k, v in info.items() if k not in ("dir", "overrides")})
            self.first_test_output.setdefault(row, denoise(self.sets["test"].ldct))
            curve = info["validation"]
            self.bench.log(
                f"{name}: in-body RMSE vs NDCT, test {scores['test'][IN_BODY[0]]:.2f} HU, validation "
                f"{scores['val'][IN_BODY[0]]:.2f} HU (the Trainer's curve ended at "
                f"{curve[-1]['body_rmse_hu'] if curve else float('nan'):.2f} HU before BatchNorm re-estimation)"
            )


def trained_row(scores: list[dict], training: list[dict], bound_hu: float) -> dict:
    """A trained row of the result: each score's mean over the seeds, their spread, the training
    records, the time to `bound_hu` on the validation curve and the worst seed's slices made worse."""
    return {
        **mean(scores),
        "seeds": len(scores),
        "spread": spread(scores),
        "training": training,
        "time_to_quality": time_to_quality(training, bound_hu),
        "worst_seed_slices_worse_than_ldct": max(run["test"]["slices_worse_than_ldct"] for run in scores),
    }


def recorded_row(result: dict, prefix: str) -> tuple[str, dict]:
    """The row of a quality_real result whose label starts with `prefix`, and that label."""
    [(name, row)] = [(name, row) for name, row in result["variants"].items() if name.startswith(prefix)]
    return name, row


def time_to_quality(training: list[dict], bound_hu: float) -> dict[str, Any]:
    """Per seed, the training minutes at which the validation curve first reached `bound_hu`
    (None: not within the run), and how many seeds reached it."""
    minutes = [
        next(
            (round(point["seconds"] / 60, 2) for point in run["validation"] if point["body_rmse_hu"] <= bound_hu), None
        )
        for run in training
    ]
    return {"minutes_by_seed": minutes, "reached": sum(m is not None for m in minutes), "seeds": len(minutes)}


def _flat(scores: dict) -> dict[tuple[str, str], float]:
    return {(group, key): float(value) for group, values in scores.items() for key, value in values.items()}


def mean(runs: list[dict]) -> dict:
    """Each score's mean over the seeds, in the scores' own shape (`blessed` becomes the share
    of seeds blessed)."""
    flats = [_flat(run) for run in runs]
    out: dict[str, dict] = {}
    for group, key in flats[0]:
        out.setdefault(group, {})[key] = float(np.mean([flat[(group, key)] for flat in flats]))
    return out


SPREAD = (
    ("test", "body_rmse_hu_ndct"),
    ("regions", "edges_rmse"),
    ("test", "psnr_ndct"),
    ("test", "slices_worse_than_ldct"),
    ("val", "body_rmse_hu_ndct"),
)


def spread(runs: list[dict]) -> dict[str, float]:
    """Largest minus smallest over the seeds of the figures a choice rests on."""
    return {f"{group}.{key}": float(np.ptp([run[group][key] for run in runs])) for group, key in SPREAD}


def _targets(variants: dict, bm3d_psd: str, paired: str | None, preset: str, slices: int) -> list[common.Ratio]:
    """The issue's targets on the test slices, each higher-is-better against its bound; those of
    a model this run did not train are left out."""
    ndct, bm3d, ldct = variants["NDCT (reference)"], variants[bm3d_psd], variants["LDCT (as is)"]
    key = IN_BODY[0]
    targets = []
    if paired is not None:
        best = variants[_label(paired, preset)]
        targets += [
            common.Ratio(
                f"{paired} (best paired): BM3D-with-spectrum / model in-body RMSE (mean of {best['seeds']} seeds)",
                bm3d["test"][key] / best["test"][key],
                round(1 / 0.9, 3),  # the model's at most 0.9x BM3D's
            ),
            common.Ratio(
                f"{paired}: MTF50 / NDCT's MTF50 (QA rods)",
                quality_scores.mean_mtf50(best["qa"]) / quality_scores.mean_mtf50(ndct["qa"]),
                0.9,
            ),
        ]
    worst = [
        v["worst_seed_slices_worse_than_ldct"] for v in variants.values() if "worst_seed_slices_worse_than_ldct" in v
    ]
    if worst:
        targets.append(
            common.Ratio(
                f"share of the {slices} test slices that no model (any seed) makes worse than their LDCT",
                1 - max(worst) / slices,
                1.0,
            )
        )
    default = variants.get(_label(DEFAULT_UNPAIRED, preset), {})
    if "test" in default:
        targets += [
            common.Ratio(
                f"{DEFAULT_UNPAIRED} (default unpaired): LDCT / model in-body RMSE (mean of {default['seeds']} seeds)",
                ldct["test"][key] / default["test"][key],
                1.25,  # the model's at most 0.8x the LDCT's
            ),
            common.Ratio(
                f"{DEFAULT_UNPAIRED}: 1 - |NPS mean frequency / NDCT's - 1| (within 15 %: at least 0.85)",
                1 - abs(default["qa"]["nps_mean_frequency"] / ndct["qa"]["nps_mean_frequency"] - 1),
                0.85,
            ),
            common.Ratio(
                f"{DEFAULT_UNPAIRED}: share of seeds the default gate blesses on the test slices",
                default["gate"]["blessed"],
                None,
            ),
        ]
    return targets


def _notes(preset: str, seeds) -> list[str]:
    return [
        f"Models: each trained at the `{preset}` preset by the Trainer's run_fn on every split of the training "
        f"patients, for seeds {', '.join(map(str, seeds))} (columns are means, `spread` is the largest minus the "
        "smallest seed's value).",
        "Reference: a real source is its own NDCT and has no noise-free truth, so every real set is scored "
        "against its NDCT (whose own noise puts a floor under any in-body RMSE); the QA phantom keeps its truth "
        "for noise, NPS and MTF50. Regions are cut from the NDCT (docs/design.md, 'Reference, noise, texture and "
        "resolution').",
        "Fidelity: the product's metric table (docs/design.md, 'Pipeline metrics and the blessing gate'); "
        "the headline is in-body RMSE, the outline band is the `edges` region.",
        "BM3D with noise spectrum: the `bm3d` package given the 2-D power spectrum of the training patients' "
        "LDCT - NDCT (unit variance), scaled per slice by the strength × the slice's noise level (the models' "
        "input); the strength of every classical method is the one with the lowest in-body RMSE against the "
        "NDCT on the validation patient.",
        "Time to quality: the first point of the Trainer's validation curve (in-body RMSE on the validation "
        "patient at every summary, before BatchNorm re-estimation and export) at or below BM3D with noise "
        "spectrum's in-body RMSE there, in training minutes of this run.",
        "Training ran in this process while the machine may have been shared: training minutes are indicative.",
    ]


if __name__ == "__main__":
    main()
