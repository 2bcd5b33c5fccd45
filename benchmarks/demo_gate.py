"""The demo's training under the default gate, seed by seed: is `make demo`'s model blessed for
every seed, or only for the one the README shows?

    python -m benchmarks.demo_gate --out benchmarks/results

For each seed of SEEDS, `ctdenoise run` (a fresh process, as a user starts it) trains the demo's
model at the demo's preset on the demo's data (`ctdenoise.app.demo`: the shipped TCIA subset rescanned
once, the neck and chest trained on, the abdomen held out) into a run root of its own, through
the default gate, and the run summary says whether the Evaluator blessed it and by how much.
The demo itself is seed 0.
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


def main() -> None:
    args = common.parse_args("benchmarks.demo_gate", __doc__)
    from ctdenoise.app import demo
    from ctdenoise.pipeline.configs import LOCAL_PRESET

    seeds, preset = (QUICK["seeds"], QUICK["preset"]) if args.quick else (SEEDS, LOCAL_PRESET)
    bench = common.Benchmark(args, "demo_gate", f"The demo's model under the default gate, {len(seeds)} seeds")
    scratch = args.out / "scratch" / "demo_gate"
    data = demo.ensure_dataset(scratch, bench.log)
    variants = {}
    for seed in seeds:
        summary, seconds = common.timed(
            functools.partial(_run, data, scratch / f"seed-{seed}", preset, demo.MODEL, seed)
        )
        variants[f"{demo.MODEL}, {preset}, seed {seed}"] = row = _row(summary, seconds)
        bench.log(
            f"seed {seed}: {'blessed' if row['blessed'] else 'refused'}, PSNR gain "
            f"{row['psnr_gain_db']:+.2f} dB, in {seconds / 60:.1f} min"
        )
    blessed = sum(v["blessed"] for v in variants.values())
    gains = [v["psnr_gain_db"] for v in variants.values()]
    bench.finish(
        params={
            "model": demo.MODEL,
            "preset": preset,
            "seeds": list(seeds),
            "data": f"ctdenoise.app.demo.DATASET {demo.DATASET}",
            "gate": "the default thresholds (ctdenoise run without gate options)",
        },
        variants=variants,
        ratios=[
            common.Ratio(
                f"{demo.MODEL}, {preset}: seeds blessed by the default gate, of {len(seeds)}", blessed / len(seeds), 1.0
            ),
            common.Ratio(
                f"{demo.MODEL}, {preset}: Evaluator's PSNR gain over the LDCT, mean of {len(seeds)} seeds "
                f"(spread {max(gains) - min(gains):.2f} dB)",
                float(np.mean(gains)),
                None,
                "dB",
            ),
        ],
        notes=[
            "Each seed is a whole `ctdenoise run --until push` in its own run root (no earlier blessed model to "
            "beat); minutes are that command's wall time on a machine that may have been shared.",
            "psnr_gain_db and body_rmse_reduction are the Evaluator's figures on the held-out abdomen "
            "(docs/design.md, 'Pipeline metrics and the blessing gate'), the ones its gate reads.",
        ],
    )


def _run(data: Path, root: Path, preset: str, model: str, seed: int) -> dict:
    """One `ctdenoise run` to the Pusher; its run summary."""
    shutil.rmtree(root, ignore_errors=True)  # a root with a blessed model would make this run beat it
    summary = root.with_name(f"{root.name}.summary.json")
    command = [
        sys.executable,
        "-m",
        "ctdenoise.app.cli",
        "run",
        "--data",
        str(data),
        "--root",
        str(root),
        "--until",
        "push",
        "--preset",
        preset,
        "--set",
        f"model={model}",
        "--set",
        f"seed={seed}",
        "--summary",
        str(summary),
    ]
    result = subprocess.run(command, cwd=common.REPO_ROOT, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"demo_gate: seed {seed} failed:\n{result.stderr[-3000:]}")
    return json.loads(summary.read_text())


def _row(summary: dict, seconds: float) -> dict:
    evaluation = summary["evaluation"]
    candidate = evaluation["overall"]["candidate"]
    return {
        "blessed": bool(evaluation["blessed"]),
        "pushed": bool((summary.get("push") or {}).get("pushed")),
        "psnr_gain_db": candidate["psnr_gain"],
        "body_rmse_reduction": candidate["body_rmse_reduction"],
        "psnr_db": candidate["psnr"],
        "ldct_psnr_db": evaluation["overall"]["ldct"]["psnr"],
        "failures": "; ".join(map(str, evaluation.get("failures") or [])) or "none",
        "train_steps": summary["train"]["steps"],
        "train_seconds": round(summary["train"]["seconds"], 1),
        "minutes": round(seconds / 60, 1),
    }


if __name__ == "__main__":
    main()
