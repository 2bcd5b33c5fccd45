"""Quality: the generator against the LDCT, Gaussian, NLM and BM3D, measured as CT physicists
measure denoisers (docs/design.md, "Measuring denoising quality"), at dose 0.25.

Data, none of it trained or tuned on twice (`benchmarks.quality_sets`):
- training: simulated patients (seed 10), ingested by the product's Beam graph;
- tuning: one other simulated patient (seed 12): each classical method's strength is the
  one with the best PSNR against its noise-free truth, the method's best shot;
- test: two held-out simulated patients (seed 21), scored against the truth and the NDCT;
  the training switches were chosen on other patients (`benchmarks.game`, seed 11);
- real anatomy: clinical slices shipped by pydicom, scanned at low dose (`simulate --from`);
- the QA phantom scanned eight times: noise, noise texture (NPS) and edge sharpness (MTF50).

Each generator is trained by the Trainer's own `run_fn` (patch streams, CycleGAN, fit,
BatchNorm re-estimation, export) and run as `ctdenoise denoise` runs the SavedModel.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import classical, common, datasets, quality_scores, quality_sets
from benchmarks import ct_measures as ct
from ctdenoise.components.dicom_example_gen.executor import read_report
from ctdenoise.contract.hu import BODY_HU, HU_MAX, HU_MIN

HYBRID = ["paired=true", "supervised_lambda=10"]
"""The cycle-identity CycleGAN plus the supervised term on co-located patches."""
PAIRED = ["model=red_cnn"]
"""RED-CNN: one network trained on co-located patches with the MSE alone."""
NO_TANH = ["tanh_output=false"]
"""Chosen for hybrid training on the validation patients (docs/design.md, "Making the adversarial game start")."""


def generators(budget: str) -> dict[str, tuple[str, list[str]]]:
    """Name → (preset, overrides): the paper's unpaired method at the demo's budget and at
    `budget`, then at `budget` RED-CNN on co-located patches (paired) and the CycleGAN plus a
    supervised term (hybrid, without the output tanh)."""
    return {
        "unpaired, cpu-demo": ("cpu-demo", []),
        f"unpaired, {budget}": (budget, []),
        f"paired, {budget}": (budget, PAIRED),
        f"hybrid, {budget}": (budget, HYBRID + NO_TANH),
    }


QUICK_GENERATORS = {"unpaired, tiny": ("tiny", []), "hybrid, tiny": ("tiny", HYBRID + NO_TANH)}
FULL: dict[str, Any] = dict(size=256, train=(6, 8), test=(2, 6), tune=(1, 3), qa_scans=8)
QUICK: dict[str, Any] = dict(size=256, train=(2, 2), test=(1, 2), tune=(1, 1), qa_scans=2, generators=QUICK_GENERATORS)
SEEDS = {"train": 10, "test": 21, "tune": 12, "real": 13, "qa": 14}
"""Seed 11 is the validation patients `benchmarks.game` chose the training switches on; the
test patients (21) were never looked at before this benchmark scored them."""
TUNING = {
    "Gaussian": (classical.gaussian, [0.25, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0]),
    "NLM": (classical.nlm, [0.6, 0.8, 1.0, 1.3, 1.7, 2.2, 3.0, 4.0, 6.0]),
    "BM3D": (classical.bm3d, [1.0, 1.5, 2.0, 3.0, 4.0, 6.0]),
}
"""Candidate strengths: Gaussian sigma in pixels; NLM h and BM3D sigma as multiples of
the slice's noise level (`classical.noise_sigma`)."""


def apply(denoise: Callable[[np.ndarray], np.ndarray], stack: np.ndarray) -> np.ndarray:
    return np.stack([denoise(image) for image in stack]).astype(np.float32)


Criterion = tuple[str, Callable[[np.ndarray, np.ndarray], float], int]
"""What a strength is chosen by: (name, score of one output slice against its reference, +1 when
higher is better or -1 when lower is)."""


def _psnr(output: np.ndarray, reference: np.ndarray) -> float:
    from ctdenoise.components.evaluation.image_metrics import psnr_hu

    return psnr_hu(output, reference)


PSNR_TRUTH: Criterion = ("psnr_truth", _psnr, 1)
BODY_RMSE: Criterion = ("in-body RMSE, HU", quality_scores.slice_body_rmse, -1)


def tune(
    bench: common.Benchmark,
    tuning: quality_sets.Images,
    methods: dict[str, tuple[Callable, list[float]]] = TUNING,
    criterion: Criterion = PSNR_TRUTH,
    reference: str = "truth",
) -> dict[str, tuple[float, dict]]:
    """Each classical method's strength (of `methods`, all by default) with the best mean
    `criterion` against `reference` (an attribute of `tuning`: the truth, or the NDCT)."""
    name_of, measure, sign = criterion
    chosen = {}
    for name, (make, candidates) in methods.items():
        scores = {
            c: float(
                np.mean(
                    [
                        measure(o, r)
                        for o, r in zip(apply(make(c), tuning.ldct), getattr(tuning, reference), strict=True)
                    ]
                )
            )
            for c in candidates
        }
        best = max(scores, key=lambda c: sign * scores[c])
        chosen[name] = (best, scores)
        if best in (candidates[0], candidates[-1]):
            bench.log(f"warning: {name}'s best strength is at the edge of its candidates")
        bench.log(f"tuned {name}: {best} ({name_of} by candidate: { {k: round(v, 2) for k, v in scores.items()} })")
    return chosen


def train_and_export(
    bench: common.Benchmark,
    examples: Path,
    scratch: Path,
    generators: dict[str, tuple[str, list[str]]],
    validation: Path | None = None,
    validation_slices: int = 0,
    base_model: Path | None = None,
) -> dict[str, dict]:
    """One generator per entry, trained and exported by the Trainer's own `run_fn`, as TFX's
    GenericExecutor calls it (warm-started from the exported `base_model` where given). With
    `validation` (an Examples folder of other patients), every split of `examples` is trained on
    and the Trainer's eval slices are `validation_slices` of the validation patients: its curve
    (the fit's "validation") is then read on them."""
    import json

    from ctdenoise.contract.names import MODEL_METADATA_FILE, split_dir
    from ctdenoise.trainer_module.models import configure
    from ctdenoise.trainer_module.run import fn_args, run_fn

    models = {}
    for name, (preset_name, overrides) in generators.items():
        hp = configure(preset_name, overrides)
        run_dir = scratch / name.replace(", ", "_")
        start = None if base_model is None else str(base_model)
        args = fn_args(str(examples), str(run_dir / "model_run"), str(run_dir / "serving_model"), hp, base_model=start)
        if validation is not None:
            args.train_files = [*args.train_files, *args.eval_files]
            args.eval_files = [f"{split_dir(str(validation), split)}/*.gz" for split in ("train", "eval")]
            args.eval_steps = validation_slices
        _, seconds = common.timed(functools.partial(run_fn, args))
        train = json.loads((run_dir / "serving_model" / MODEL_METADATA_FILE).read_text())["train"]
        judged = {k: round(v, 3) for k, v in train["losses"].items() if k.endswith("/accuracy")}
        models[name] = {
            "dir": run_dir / "serving_model",
            "preset": preset_name,
            "steps": hp.total_steps,
            "overrides": " ".join(overrides) or "none",
            "train_minutes": round(seconds / 60, 1),
            "final_d_accuracy": judged,
            **({"validation": train.get("validation", [])} if validation is not None else {}),
        }
        bench.log(
            f"{name}: {hp.total_steps} steps trained and exported in {seconds / 60:.1f} min"
            + (f"; final discriminator accuracy {judged}" if judged else "")
        )  # a model with no critic has none
    return models


def main() -> None:
    args = common.parse_args("benchmarks.quality", __doc__, _options)
    common.quiet_tensorflow()
    sizes = QUICK if args.quick else {**FULL, "generators": generators(args.budget)}
    bench = common.Benchmark(args, "quality", "Quality against the truth and the NDCT, dose 0.25")
    sets = {
        name: datasets.simulated(args.data, patients=p, slices=s, size=sizes["size"], seed=SEEDS[name])
        for name, (p, s) in (("train", sizes["train"]), ("test", sizes["test"]), ("tune", sizes["tune"]))
    }
    examples = datasets.ingested(args.data, sets["train"])
    scratch = args.out / "scratch" / "quality"
    shutil.rmtree(scratch, ignore_errors=True)  # never resume from an earlier benchmark run
    models = train_and_export(bench, examples, scratch, sizes["generators"])

    image_sets = {
        "test": quality_sets.images(sets["test"]),
        "real": quality_sets.real_anatomy(args.data, sizes["size"], SEEDS["real"]),
    }
    qa = quality_sets.qa_scans(sizes["size"], sizes["qa_scans"], SEEDS["qa"])
    chosen = tune(bench, quality_sets.images(sets["tune"]))
    methods = _methods(chosen, models)
    variants: dict[str, dict] = {}
    outputs_test: dict[str, np.ndarray] = {}
    for name, denoise in methods.items():
        outputs = {key: denoise(images) for key, images in image_sets.items()}
        outputs_test[name] = outputs["test"]
        variants[name] = {key: quality_scores.fidelity(out, image_sets[key]) for key, out in outputs.items()}
        variants[name]["test"]["noise_std"] = quality_scores.noise_in_uniform_regions(
            outputs["test"], image_sets["test"]
        )
        variants[name]["regions"] = quality_scores.region_errors(outputs["test"], image_sets["test"])
        variants[name]["qa"] = quality_scores.qa(denoise(qa), qa)
        variants[name]["gate"] = _default_gate(outputs["test"], image_sets["test"])
        bench.log(
            f"{name}: vs truth {variants[name]['test']['psnr_truth']:.2f} dB, "
            f"body RMSE vs NDCT {variants[name]['test']['body_rmse_hu_ndct']:.1f} HU"
        )
    for name, model in models.items():
        variants[f"generator, {name}"]["training"] = {k: v for k, v in model.items() if k != "dir"}
    for name, (strength, _) in chosen.items():
        variants[_named(variants, name)]["strength"] = strength

    _panel(args.out / "quality_panel.png", outputs_test, image_sets["test"])
    ratios = _ratios(variants, models)
    bench.finish(
        limits=_limits(variants, models) if any(r.met is False for r in ratios) else [],
        params={
            "size_px": sizes["size"],
            "dose": datasets.DOSE,
            "test_slices": len(image_sets["test"]),
            "real_slices": len(image_sets["real"]),
            "qa_scans": sizes["qa_scans"],
            "seeds": SEEDS,
            "train_patients": sizes["train"][0],
            "train_slices_per_patient": sizes["train"][1],
            "train_split_examples": read_report(str(examples))["examples"]["train"],
            "real_anatomy": ", ".join(quality_sets.REAL_SLICES),
            "tuned": {name: {"chosen": c, "psnr_truth_by_candidate": p} for name, (c, p) in chosen.items()},
        },
        variants=variants,
        ratios=ratios,
        figures=["quality_panel.png"],
        notes=_notes(sizes),
    )


def _options(parser) -> None:
    parser.add_argument(
        "--budget",
        default="cpu-30min",
        help="preset of the longer-trained generators "
        "(default cpu-30min; cpu-demo gives a shorter run of the same comparison)",
    )


def served(serve: Callable[[np.ndarray], np.ndarray], stack: np.ndarray) -> np.ndarray:
    """A stack of slices through a served generator, which takes and gives one channel."""
    return serve(stack[..., None])[..., 0]


def _methods(chosen: dict, models: dict[str, dict]) -> dict[str, Callable[[quality_sets.Images], np.ndarray]]:
    """Method name → function from an image set (or a stack) to its denoised LDCT."""

    def on_ldct(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[quality_sets.Images], np.ndarray]:
        return lambda images: fn(images.ldct)

    methods = {"LDCT (as is)": on_ldct(lambda stack: stack), "NDCT (reference)": lambda images: images.ndct}
    for name, (make, _) in TUNING.items():
        methods[f"{name} (tuned {chosen[name][0]:g})"] = on_ldct(functools.partial(apply, make(chosen[name][0])))
    for name, model in models.items():
        serve = classical.saved_model(model["dir"])
        methods[f"generator, {name}"] = on_ldct(functools.partial(served, serve))
    return methods


def _default_gate(output: np.ndarray, images: quality_sets.Images) -> dict[str, float | bool]:
    """The Evaluator's default blessing criteria, by the product's metric table, on the test
    patients."""
    from ctdenoise.components.evaluation.metric_table import gate

    return gate(output, images.ldct, images.ndct)


def _named(variants: dict, prefix: str) -> str:
    return next(name for name in variants if name.startswith(prefix))


def _ratios(variants: dict[str, dict], models: dict[str, dict]) -> list[common.Ratio]:
    """The targets, each as higher-is-better against its bound (BENCHMARKS.md's summary lists them)."""
    bm3d, ndct, ldct = _named(variants, "BM3D"), variants["NDCT (reference)"], variants["LDCT (as is)"]
    nps_ndct = ndct["qa"]["nps_mean_frequency"]
    ratios = []
    for name in models:
        ours = variants[f"generator, {name}"]
        budget = name.split(", ")[-1]
        if name.startswith("unpaired") and budget in ("cpu-demo", "tiny"):
            ratios.append(
                common.Ratio(
                    f"{name}: LDCT / generator in-body RMSE vs NDCT",
                    ldct["test"]["body_rmse_hu_ndct"] / ours["test"]["body_rmse_hu_ndct"],
                    1.25,
                )
            )
            ratios.append(
                common.Ratio(f"{name}: default gate blesses it (1 = yes)", float(ours["gate"]["blessed"]), 1.0)
            )
        elif name.startswith("unpaired"):
            for key, where in (("test", "simulated"), ("real", "real anatomy")):
                ratios.append(
                    common.Ratio(
                        f"{name}: generator - BM3D, PSNR vs truth, {where}",
                        ours[key]["psnr_truth"] - variants[bm3d][key]["psnr_truth"],
                        0.0,
                        "dB",
                    )
                )
            ratios.append(
                common.Ratio(
                    f"{name}: NDCT - generator, PSNR vs truth (the bound a CycleGAN aims at)",
                    ndct["test"]["psnr_truth"] - ours["test"]["psnr_truth"],
                    None,
                    "dB",
                )
            )
            closer = abs(variants[bm3d]["qa"]["nps_mean_frequency"] / nps_ndct - 1) - abs(
                ours["qa"]["nps_mean_frequency"] / nps_ndct - 1
            )
            ratios.append(
                common.Ratio(f"{name}: NPS mean frequency, BM3D's distance to NDCT's - ours", closer, 0.0, "(relative)")
            )
            ratios.append(
                common.Ratio(
                    f"{name}: MTF50 / NDCT's MTF50 (QA rods)",
                    quality_scores.mean_mtf50(ours["qa"]) / quality_scores.mean_mtf50(ndct["qa"]),
                    0.9,
                )
            )
        else:
            for key, where in (("test", "simulated"), ("real", "real anatomy")):
                ratios.append(
                    common.Ratio(
                        f"{name}: generator - BM3D, PSNR vs truth, {where}",
                        ours[key]["psnr_truth"] - variants[bm3d][key]["psnr_truth"],
                        1.0,
                        "dB",
                    )
                )
    return ratios


def _panel(path: Path, outputs: dict[str, np.ndarray], images: quality_sets.Images) -> None:
    """The same region of one test slice across all methods and the truth, soft-tissue window."""
    from ctdenoise.app.display import labelled_panels

    index = len(images) // 2
    size = images.ldct.shape[1]
    crop = (slice(size // 4, size // 4 + size // 2), slice(size // 4, size // 4 + size // 2))
    short = {name: name.split(" (")[0].removeprefix("generator, ") for name in outputs}
    picture = {short[name]: out[index][crop] for name, out in outputs.items()}
    picture["truth"] = images.truth[index][crop]
    labelled_panels(picture).save(path)


def _limits(variants: dict[str, dict], models: dict[str, dict]) -> list[str]:
    """What the measurements say where a target was missed."""
    bm3d, ndct = _named(variants, "BM3D"), variants["NDCT (reference)"]
    lines = [
        f"The NDCT itself scores {ndct['test']['psnr_truth']:.2f} dB against the truth and BM3D "
        f"{variants[bm3d]['test']['psnr_truth']:.2f} dB: an unpaired CycleGAN learns to make NDCT-like images, "
        "NDCT noise included, so the NDCT's score bounds what it aims at, while the supervised term pulls "
        "towards the noise-free image."
    ]
    for name, model in models.items():
        ours = variants[f"generator, {name}"]
        lines.append(
            f"{name}: {model['steps']} steps in {model['train_minutes']} min, final discriminator accuracy "
            f"{model['final_d_accuracy']}; vs truth {ours['test']['psnr_truth']:.2f} dB, NPS mean frequency "
            f"{ours['qa']['nps_mean_frequency']:.3f} cycles/mm (NDCT {ndct['qa']['nps_mean_frequency']:.3f}), "
            f"MTF50 {quality_scores.mean_mtf50(ours['qa']):.3f} (NDCT {quality_scores.mean_mtf50(ndct['qa']):.3f}) "
            f"cycles/mm; against the truth, RMSE {_region(ours, 'edges')} at the body's edges, "
            f"{_region(ours, 'soft_tissue')} in soft tissue and {_region(ours, 'lungs')} in the lungs "
            f"(BM3D: {_rmse(variants[bm3d], 'edges')}, {_rmse(variants[bm3d], 'soft_tissue')} and "
            f"{_rmse(variants[bm3d], 'lungs')} HU)."
        )
    return lines


def _rmse(scores: dict, region: str) -> str:
    return f"{scores['regions'][region + '_rmse']:.1f}"


def _region(scores: dict, region: str) -> str:
    """A region's RMSE, bias and share of the squared error, as one phrase."""
    r = scores["regions"]
    return f"{_rmse(scores, region)} HU (bias {r[region + '_bias']:+.1f}, {r[region + '_share']:.0%} of the error)"


def _gate_note() -> str:
    """The Evaluator's default criteria, as the benchmark applies them (`_default_gate`)."""
    from ctdenoise.components.evaluation.metric_table import GATED
    from ctdenoise.components.evaluation.thresholds import BlessingThresholds

    bounds = ", ".join(f"{entry.gain_name} >= {entry.judged.lower_bound(BlessingThresholds()):g}" for entry in GATED)
    return f"gate: the Evaluator's default criteria ({bounds}, all against the NDCT) computed on the test patients."


def _notes(sizes: dict) -> list[str]:
    test, tune = sizes["test"], sizes["tune"]
    return [
        f"Test: {test[0]} held-out simulated patients × {test[1]} slices (seed {SEEDS['test']}); training: "
        f"{sizes['train'][0]} patients × {sizes['train'][1]} slices (seed {SEEDS['train']}), split by patient; "
        f"classical strengths tuned for PSNR against the truth on {tune[0]} × {tune[1]} slices "
        f"(seed {SEEDS['tune']}); the real-anatomy slices and the test patients are never tuned on.",
        "Fidelity: the product's metric table (docs/design.md, 'Pipeline metrics and the blessing gate'), "
        "pooled over slices as the Evaluator pools it, "
        f"against the truth (*_truth) and the NDCT (*_ndct): psnr/ssim on HU clipped to [{HU_MIN:g}, {HU_MAX:g}] "
        f"scaled to [-1, 1] (data range 2), means of slices; rmse_hu and body_rmse_hu pooled in HU, the latter "
        "inside the "
        f"reference's body (> {BODY_HU:g} HU); body_ssim over the windows centred in that body; "
        "noise_std: HU of output − truth in the truth's flat "
        "regions; regions: RMSE, bias (HU) and share of the squared error against the truth, pooled over the "
        f"test slices, by region of the truth (edges within {ct.EDGE_PX} px of the body's outline, air < "
        f"{ct.AIR_BELOW_HU:g} HU, lungs, soft tissue up to {ct.BONE_ABOVE_HU:g} HU, bone); qa: water noise, NPS "
        "mean frequency (cycles/mm, TG-233 normalisation, 32-px ROIs over all scans), MTF50 (cycles/mm) and "
        "10–90 % edge rise (mm) of each rod's edge profile averaged over all scans.",
        _gate_note(),
        "Training ran in this process while the machine may have been shared: training minutes are indicative.",
    ]


if __name__ == "__main__":
    main()
