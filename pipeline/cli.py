"""The `ctdenoise` command line (SPEC §3).

Heavy imports (TensorFlow, TFX, Beam) happen inside the commands that need them, so
`--help` and `simulate` start fast. Any failure ends with one line on stderr and exit 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from pipeline import configs


def _quiet_libraries() -> None:
    """TensorFlow, absl and Google client libraries are chatty; keep errors, drop noise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ start-up noise; Python errors still raise
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(google|apache_beam|tfx|tensorflow).*")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")


class _ComponentProgress(logging.Filter):
    """Turns LocalDagRunner's 'Component X is running/finished' records into progress lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in ("Component %s is running.", "Component %s is finished."):
            state = "running" if "running" in record.msg else "done"
            print(f"[run] {record.args[0]}: {state}", flush=True)
        return record.levelno >= logging.ERROR and not str(record.msg).startswith("Execution")


def _watch_components() -> None:
    import absl.logging

    absl.logging.set_verbosity(absl.logging.INFO)
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    for handler in absl_logger.handlers + logging.getLogger().handlers:
        handler.addFilter(_ComponentProgress())
    absl.logging.get_absl_handler().addFilter(_ComponentProgress())


def cmd_simulate(args: argparse.Namespace) -> int:
    from pipeline.simulate import simulate_dataset

    simulate_dataset(  # prints its own progress and closing line
        Path(args.out), patients=args.patients, slices=args.slices, size=args.size,
        dose=args.dose, seed=args.seed, from_dir=Path(args.from_dir) if args.from_dir else None,
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    data, root = Path(args.data), Path(args.root)
    if not data.is_dir():
        raise UserError(f"data folder not found: {data}")
    from components.dicom_example_gen.layout import Layout
    from pipeline.local_runner import run_local
    from pipeline.metadata import open_store
    from pipeline.summary import build_summary
    from trainer_module import hparams as hparams_lib

    hparams = hparams_lib.to_dict(hparams_lib.with_overrides(hparams_lib.preset(args.preset), args.set))
    default = Layout()
    layout = Layout(tuple(args.ldct_dir or default.ldct_dirs), tuple(args.ndct_dir or default.ndct_dirs), args.pattern)
    _watch_components()
    failure = None
    try:
        run_local(data, root, args.until, layout=layout, hparams=hparams, beam_pipeline_args=args.beam_arg or None)
    except Exception as exc:  # reported as one line after the summary is written
        failure = exc
    summary = build_summary(open_store(root)) if configs.metadata_path(root).exists() else {}
    _print_summary(summary)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2) + "\n")
    if failure is not None:
        raise UserError(_one_line(failure))
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    ingest = summary.get("ingest")
    if ingest:
        print(
            f"ingest: {ingest['accepted']} files accepted, {len(ingest['rejected'])} rejected, "
            f"{ingest['pairs']} pairs, examples train={ingest['examples']['train']} eval={ingest['examples']['eval']}"
        )
        for rejection in ingest["rejected"][:10]:
            print(f"  rejected {rejection['path']}: {rejection['reason']}")
        if len(ingest["rejected"]) > 10:
            print(f"  … {len(ingest['rejected']) - 10} more in the summary")
    validation = summary.get("validation")
    if validation:
        print(f"validation: {'passed' if validation['passed'] else 'FAILED'}")
        for anomaly in validation["anomalies"]:
            print(f"  {anomaly}")
    train = summary.get("train")
    if train:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in train["final_losses"].items() if k != "lr")
        print(f"train: {train['steps']} steps in {train['seconds']:.0f} s; {losses}")
        print(f"  model: {train['model_uri']}\n  tensorboard: {train['tensorboard_dir']}")


class UserError(Exception):
    """A failure the user can act on; printed as one line."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 600 else text[:597] + "..."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctdenoise", description="Low-dose CT denoising pipeline (TFX).")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="write a simulated LDCT/NDCT DICOM dataset")
    sim.add_argument("--out", required=True, help="output folder (DIR/<patient>/{LDCT,NDCT}/*.dcm)")
    sim.add_argument("--patients", type=int, default=3)
    sim.add_argument("--slices", type=int, default=4, help="slices per patient")
    sim.add_argument("--size", type=int, default=256, help="image size in pixels")
    sim.add_argument("--dose", type=float, default=0.25, help="low-dose fraction of the full dose")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--from", dest="from_dir", help="use real full-dose DICOM slices as the anatomy")
    sim.set_defaults(func=cmd_simulate)

    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, SQLite ML Metadata)")
    run.add_argument("--data", required=True, help="DICOM data root")
    run.add_argument("--root", default=str(configs.DEFAULT_RUN_ROOT), help="run root (outputs and ML Metadata)")
    run.add_argument("--until", choices=configs.STAGES[:3], default="train", help="last stage to run")
    run.add_argument("--preset", default=configs.DEFAULT_PRESET, help="hyperparameter preset: cpu-demo, paper, tiny")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override one hyperparameter, e.g. --set epochs=2 (repeatable)")
    run.add_argument("--summary", help="write the run summary JSON here")
    run.add_argument("--ldct-dir", action="append", help="low-dose folder name (repeatable; default LDCT)")
    run.add_argument("--ndct-dir", action="append", help="normal-dose folder name (repeatable; default NDCT)")
    run.add_argument("--pattern", default="*", help="file-name glob of DICOM files, e.g. '*.IMA'")
    run.add_argument("--beam-arg", action="append", help="extra Apache Beam pipeline argument (repeatable)")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # every failure is one line; CTDENOISE_DEBUG=1 shows the traceback
        if os.environ.get("CTDENOISE_DEBUG"):
            raise
        print(f"ctdenoise: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ctdenoise: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
