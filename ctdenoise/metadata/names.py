"""The names ML Metadata records a run under, and where a run root keeps its parts.

Below the pipeline and the command line, so that everything reading or writing the store (the
pipeline that sets the node ids, the run summary, lineage, recovery, progress) takes them from
one place."""

from __future__ import annotations

from pathlib import Path

PIPELINE_NAME = "ctdenoise"
"""The pipeline's name in a run root's own SQLite store (a shared store names each root's: `store.StoreAddress`)."""

EXAMPLE_GEN_ID, HU_GATE_ID, TRAINER_ID, EVALUATOR_ID, PUSHER_ID = (
    "DicomExampleGen",
    "HUGate",
    "Trainer",
    "Evaluator",
    "Pusher",
)
BASELINE_RESOLVER_ID = "LatestBlessedModelResolver"
WARM_START_IMPORTER_ID = "WarmStartModel"
"""Node ids of the pipeline's components (`ctdenoise.pipeline.pipeline.create_pipeline` sets them): ML Metadata
records each execution under its node id, and the run summary, resume and Kubeflow's
per-component images find them by it."""

DEFAULT_RUN_ROOT = Path("runs")
"""Run root (relative to the working directory): pipeline outputs, ML Metadata, pushed models."""


def pipeline_root(run_root: Path) -> Path:
    return run_root / "pipeline"


def metadata_path(run_root: Path) -> Path:
    return run_root / "metadata.sqlite"


def serving_dir(run_root: Path) -> Path:
    """Where Pusher writes blessed models, one numbered version folder each."""
    return run_root / "serving"


def warm_start_dir(pipeline_root: str) -> str:
    """Where `ctdenoise run --warm-start PATH` keeps its copy of the starting model, one
    content-addressed model artifact folder each (`ctdenoise.pipeline.warm_start`)."""
    return pipeline_root.rstrip("/") + "/WarmStart"
