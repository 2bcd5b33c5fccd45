"""The demo's training under the default gate, seed by seed: is `make demo`'s model blessed for
every seed, or only for the one the README shows?

    python -m benchmarks.demo_gate --out benchmarks/results

For each seed of SEEDS, `ctdenoise run --warm-start base` (a fresh process, as a user starts it)
fine-tunes the demo's model from its shipped base at the demo's preset on the demo's data
(`ctdenoise.app.demo`: the shipped TCIA subset rescanned once, the neck and chest trained on, the
abdomen held out) into a run root of its own, through the default gate, which then also compares
with the base, and the run summary says whether the Evaluator blessed it and by how much. The
demo itself is seed 0.

Then `denoise --model base` and the model the demo shows (seed 0's) denoise the held-out
patient's real 512 x 512 slices (`ctdenoise/data/realct`) through `denoise`'s model path: the
base must not cost a user more than 1.5x the demo's model.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

SEEDS = (0, 1, 2)
QUICK: dict[str, Any] = dict(seeds=(0,), preset="tiny")
SPEED_TARGET = 1.5
"""The base model's time on a 512 x 512 slice: at most this many times the demo's model's."""
SPEED_SECONDS = 10.0
"""Each model's timed calls last at least this long."""


def main() -> None:
    args = common.parse_args("benchmarks.demo_gate", __doc__)
    from ctdenoise.app import demo
    from ctdenoise.pipeline.configs import LOCAL_PRESET

    seeds, preset = (QUICK["seeds"], QUICK["preset"]) if args.quick else (SEEDS, LOCAL_PRESET)
    bench = common.Benchmark(args, "demo_gate", f"The demo's model under the default gate, {len(seeds)} seeds")
    scratch = args.out / "scratch" / "demo_gate"
    data = demo.ensure_dataset(scratch, bench.log)
    variants, summaries = {}, []
    for seed in seeds:
        summary, seconds = common.timed(functools.partial(_run, data, scratch / f"seed-{seed}", preset, seed))
        summaries.append(summary)
        variants[f"{demo.MODEL} from base, {preset}, seed {seed}"] = row = _row(summary, seconds)
        bench.log(
            f"seed {seed}: {'blessed' if row['blessed'] else 'refused'}, in-body RMSE LDCT "
            f"{row['ldct_body_rmse_hu']:.1f} / base {row['base_body_rmse_hu']:.1f} / fine-tuned "
            f"{row['body_rmse_hu']:.1f} HU, in {seconds / 60:.1f} min"
        )
    speed = _speed(bench, summaries[0], 1.0 if args.quick else SPEED_SECONDS)
    blessed = sum(v["blessed"] for v in variants.values())
    gains = [v["psnr_gain_db"] for v in variants.values()]
    versus_base = [v["body_rmse_hu"] / v["base_body_rmse_hu"] for v in variants.values()]
    bench.finish(
        params={
            "model": demo.MODEL,
            "preset": preset,
            "seeds": list(seeds),
            "start": "the shipped base model (--warm-start base)",
            "data": f"ctdenoise.app.demo.DATASET {demo.DATASET}",
            "gate": "the default thresholds (ctdenoise run without gate options), against the LDCT and the base",
            "speed_slices": f"{speed['slices']} real 512 x 512 slices of {demo.REAL_CT.name}/{speed['patient']}",
        },
        variants={**variants, **speed["variants"]},
        ratios=[
            common.Ratio(
                f"{demo.MODEL} from base, {preset}: seeds blessed by the default gate, of {len(seeds)}",
                blessed / len(seeds),
                1.0,
            ),
            common.Ratio(
                f"{demo.MODEL} from base, {preset}: Evaluator's PSNR gain over the LDCT, mean of {len(seeds)} seeds "
                f"(spread {max(gains) - min(gains):.2f} dB)",
                float(np.mean(gains)),
                None,
                "dB",
            ),
            common.Ratio(
                f"{demo.MODEL} from base, {preset}: fine-tuned / base in-body RMSE on the held-out abdomen, "
                f"mean of {len(seeds)} seeds",
                float(np.mean(versus_base)),
                None,
            ),
            common.Ratio(
                f"denoise on 512 x 512 slices: base model / the demo's model slices/s (base at most "
                f"{SPEED_TARGET:g}x the demo model's time)",
                speed["ratio"],
                1 / SPEED_TARGET,
            ),
        ],
        notes=[
            "Each seed is a whole `ctdenoise run --until push --warm-start base` in its own run root (the "
            "Evaluator's baseline is the base it started from); minutes are that command's wall time on a machine "
            "that may have been shared.",
            "psnr_gain_db and body_rmse_reduction are the Evaluator's figures on the held-out abdomen "
            "(docs/design.md, 'Pipeline metrics and the blessing gate'), the ones its gate reads; base_* are the "
            "base model's on the same slices.",
            "The speed rows time the loaded SavedModels as `ctdenoise denoise` calls them (batch of all slices, "
            "after one untimed call); the demo fine-tunes the base, so both have the same architecture.",
        ],
    )


def _speed(bench: common.Benchmark, summary: dict, min_seconds: float) -> dict[str, Any]:
    """Slices/s of the base model and of the model the demo shows (pushed, or the candidate the gate
    refused) in the run `summary`, on its eval patient's real 512 x 512 slices."""
    from tfx.utils import path_utils

    from benchmarks.inference import hu_batch, time_model
    from ctdenoise.app import demo
    from ctdenoise.app.base_models import base_model

    patient = sorted(summary["evaluation"]["per_patient"])[0]
    batch = hu_batch(sorted((demo.REAL_CT / patient).glob("*.dcm")))
    trained = (summary.get("push") or {}).get("path") or path_utils.serving_model_dir(summary["train"]["model_uri"])
    models = {"denoise --model base": base_model(demo.MODEL), "the demo's model": Path(trained)}
    rows = {name: time_model(bench, name, folder, batch, min_seconds, 2) for name, folder in models.items()}
    base, ours = (rows[name]["slices_per_s"] for name in models)
    return {"patient": patient, "slices": len(batch), "variants": rows, "ratio": base / ours}


def _run(data: Path, root: Path, preset: str, seed: int) -> dict:
    """One `ctdenoise run` from the base model to the Pusher, as the demo trains; its run summary."""
    from ctdenoise.app import demo

    shutil.rmtree(root, ignore_errors=True)  # a root with a blessed model would make this run beat it
    summary = root.with_name(f"{root.name}.summary.json")
    sets = [item for name in (*demo.overrides(preset), f"seed={seed}") for item in ("--set", name)]
    command = [sys.executable, "-m", "ctdenoise.app.cli", "run", "--data", str(data), "--root", str(root)]
    command += ["--until", "push", "--preset", preset, "--warm-start", "base", *sets, "--summary", str(summary)]
    result = subprocess.run(command, cwd=common.REPO_ROOT, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"demo_gate: seed {seed} failed:\n{result.stderr[-3000:]}")
    return json.loads(summary.read_text())


def _row(summary: dict, seconds: float) -> dict:
    evaluation = summary["evaluation"]
    overall = evaluation["overall"]
    candidate, base, ldct = overall["candidate"], overall["baseline"], overall["ldct"]
    return {
        "blessed": bool(evaluation["blessed"]),
        "pushed": bool((summary.get("push") or {}).get("pushed")),
        "psnr_gain_db": candidate["psnr_gain"],
        "body_rmse_reduction": candidate["body_rmse_reduction"],
        "psnr_db": candidate["psnr"],
        "base_psnr_db": base["psnr"],
        "ldct_psnr_db": ldct["psnr"],
        "body_rmse_hu": candidate["body_rmse_hu"],
        "base_body_rmse_hu": base["body_rmse_hu"],
        "ldct_body_rmse_hu": ldct["body_rmse_hu"],
        "failures": "; ".join(map(str, evaluation.get("failures") or [])) or "none",
        "train_steps": summary["train"]["steps"],
        "train_seconds": round(summary["train"]["seconds"], 1),
        "minutes": round(seconds / 60, 1),
    }


if __name__ == "__main__":
    main()
