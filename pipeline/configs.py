"""Pipeline constants: names, locations and defaults shared by every runner and the command line."""

from __future__ import annotations

from pathlib import Path

PIPELINE_NAME = "ctdenoise"

STAGES = ("ingest", "validate", "train", "evaluate", "push")
"""`ctdenoise run --until STAGE` runs every stage up to and including STAGE."""

EXAMPLE_GEN_ID, HU_GATE_ID, TRAINER_ID, EVALUATOR_ID, PUSHER_ID = (
    "DicomExampleGen",
    "HUGate",
    "Trainer",
    "Evaluator",
    "Pusher",
)
BASELINE_RESOLVER_ID = "LatestBlessedModelResolver"
"""Node ids of the pipeline's components (`ctdenoise.pipeline.pipeline.create_pipeline` sets them): ML Metadata
records each execution under its node id, and the run summary, resume and Kubeflow's
per-component images find them by it."""

DEFAULT_RUN_ROOT = Path("runs")
"""Run root (relative to the working directory): pipeline outputs, ML Metadata, pushed models."""

LOCAL_PRESET = "cpu-demo"
"""Hyperparameter preset of local runs (trainer_module/hparams.py): sized for a laptop CPU."""
KUBEFLOW_PRESET = "paper"
"""Hyperparameter preset of Kubeflow runs, whose Trainer asks for a GPU."""

EVAL_FRACTION = 0.25
"""Share of patients held out for the `eval` split (by patient, see layout.assign_splits)."""


SCHEMA_FILE_IN_REPO = "components/schema/schema.pbtxt"
SCHEMA_FILE = Path(__file__).resolve().parent.parent / SCHEMA_FILE_IN_REPO
"""The curated schema TFDV validates the scalar features against."""

BEAM_PIPELINE_ARGS = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
"""Beam DirectRunner in-process: no worker start-up cost on small local runs. Pass
`--beam-arg --direct_running_mode=multi_processing --beam-arg --direct_num_workers=2` for more cores."""


def pipeline_root(run_root: Path) -> Path:
    return run_root / "pipeline"


def metadata_path(run_root: Path) -> Path:
    return run_root / "metadata.sqlite"


def serving_dir(run_root: Path) -> Path:
    """Where Pusher writes blessed models, one numbered version folder each."""
    return run_root / "serving"
