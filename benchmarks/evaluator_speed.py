"""Evaluator speed at clinical size: the pipeline's Evaluator against `ctdenoise denoise` on the
same eval slices at 512 px, on this CPU, with where the Evaluator's time goes.

    python -m benchmarks.evaluator_speed --out benchmarks/results

The shipped real patients (`ctdenoise/data/realct`, the demo's) are rescanned at 512 px with
noise of dose 0.25 inserted, MAX_SLICES per patient. `ctdenoise run --until evaluate` trains
`red_cnn` at `cpu-demo`'s size for TRAIN_STEPS steps (speed does not depend on the weights) and
runs the standard Evaluator on the held-out patient; its time is read from ML Metadata (the
execution's start to its end). `denoise` then runs on that patient's LDCT series with the
trained model, as a user runs it: reading, the noise estimate, the model, writing the derived
series. The Evaluator's model calls are timed apart through the signature it uses
(`from_examples`, batches of BATCH), so the rest is TFMA's own work and the metrics.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common

TARGET = 0.5
"""denoise's seconds over the Evaluator's: at least 0.5, i.e. the Evaluator within 2× of denoise."""
TRAIN_STEPS = 10
BATCH = 4
FULL: dict[str, Any] = dict(size=512, max_slices=12)
QUICK: dict[str, Any] = dict(size=128, max_slices=3)


def simulate(out: Path, size: int, slices: int) -> None:
    from ctdenoise.app.demo import REAL_CT
    from ctdenoise.simulator.dataset import simulate_dataset

    simulate_dataset(out, from_dir=REAL_CT, size=size, slices=slices, dose="0.25", seed=0, progress=None)


def run_until_evaluate(data: Path, root: Path) -> None:
    command = [sys.executable, "-m", "ctdenoise.app.cli", "run", "--data", str(data), "--root", str(root)]
    command += ["--until", "evaluate", "--preset", "cpu-demo", "--set", "model=red_cnn", "--set", "epochs=1"]
    command += ["--set", f"steps_per_epoch={TRAIN_STEPS}", "--set", "log_every=5", "--set", "summary_every=5"]
    command += ["--set", "checkpoint_every=5", "--set", "decay_start_epoch=0"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def evaluator_seconds(root: Path) -> tuple[float, str]:
    """The Evaluator execution's wall seconds (ML Metadata's start and end times) and the URI of the
    model it judged."""
    from ctdenoise.metadata import names
    from ctdenoise.metadata.queries import INPUT_EVENTS, latest_run_executions, open_store

    store = open_store(root)
    evaluator = latest_run_executions(store)[names.EVALUATOR_ID]
    seconds = (evaluator.last_update_time_since_epoch - evaluator.create_time_since_epoch) / 1000.0
    [model] = [
        e.artifact_id
        for e in store.get_events_by_execution_ids([evaluator.id])
        if e.type in INPUT_EVENTS and e.path.steps[0].key == "model"
    ]
    return seconds, store.get_artifacts_by_id([model])[0].uri


def eval_patient(data: Path) -> str:
    from ctdenoise.components.dicom_example_gen.layout import assign_splits
    from ctdenoise.pipeline.configs import EVAL_FRACTION

    patients = {p.name for p in data.iterdir() if p.is_dir()}
    [patient] = [p for p, split in assign_splits(patients, EVAL_FRACTION).items() if split == "eval"]
    return patient


def model_call_seconds(saved_model: str, examples_uri: str) -> tuple[float, int]:
    """Seconds of the Evaluator's signature on the eval split's examples in batches of BATCH, first
    call included (as in the Evaluator), and the number of examples."""
    import tensorflow as tf

    from ctdenoise.contract.names import EXAMPLES_SIGNATURE, split_dir

    files = sorted(Path(split_dir(examples_uri, "eval")).glob("*.gz"))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP")]
    start = time.perf_counter()
    signature = tf.saved_model.load(saved_model).signatures[EXAMPLES_SIGNATURE]
    for i in range(0, len(serialized), BATCH):
        signature(tf.constant(serialized[i : i + BATCH]))
    return time.perf_counter() - start, len(serialized)


def main() -> None:
    args = common.parse_args("benchmarks.evaluator_speed", __doc__)
    common.quiet_tensorflow()
    from ctdenoise.app.denoise import denoise_series

    sizes = QUICK if args.quick else FULL
    bench = common.Benchmark(args, "evaluator_speed", f"Evaluator speed at {sizes['size']} px vs denoise")
    scratch = args.out / "scratch" / "evaluator_speed"
    shutil.rmtree(scratch, ignore_errors=True)
    data, root = scratch / "dicom", scratch / "root"
    simulate(data, sizes["size"], sizes["max_slices"])
    patient = eval_patient(data)
    bench.log(f"simulated; eval patient {patient}")
    run_until_evaluate(data, root)
    evaluator_s, model_uri = evaluator_seconds(root)
    saved_model = str(Path(model_uri) / "Format-Serving")
    bench.log(f"Evaluator: {evaluator_s:.1f} s")
    report = denoise_series(saved_model, data / patient / "LDCT", scratch / "denoised", progress=None)
    bench.log(f"denoise: {report.slices} slices in {report.seconds:.1f} s")
    examples = sorted((root / "pipeline" / "DicomExampleGen" / "examples").iterdir())[-1]
    calls_s, count = model_call_seconds(saved_model, str(examples))
    bench.log(f"Evaluator's signature on {count} examples: {calls_s:.1f} s")
    shutil.rmtree(scratch, ignore_errors=True)
    bench.finish(
        params={"size_px": sizes["size"], "max_slices": sizes["max_slices"], "model": "red_cnn", "preset": "cpu-demo"},
        variants={
            "Evaluator (ML Metadata start to end)": {"seconds": round(evaluator_s, 1), "slices": count},
            "denoise (read, estimate, model, write)": {"seconds": round(report.seconds, 1), "slices": report.slices},
            "Evaluator's model calls (from_examples, batch 4)": {"seconds": round(calls_s, 1), "slices": count},
        },
        ratios=[common.Ratio("denoise / Evaluator seconds", report.seconds / evaluator_s, TARGET)],
        notes=[
            f"The Evaluator's model calls are {calls_s / evaluator_s:.0%} of its time; the rest is TFMA "
            "(reading, batching, metrics) and the TFX launcher.",
        ],
    )


if __name__ == "__main__":
    main()
