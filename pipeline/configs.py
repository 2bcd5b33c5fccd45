"""Pipeline constants: stages, presets, the schema and Beam's defaults, shared by every runner and the command
line. The names ML Metadata records a run under, and the run root's layout, are `ctdenoise.metadata.names`."""

from __future__ import annotations

from pathlib import Path

STAGES = ("ingest", "validate", "train", "evaluate", "push")
"""`ctdenoise run --until STAGE` runs every stage up to and including STAGE."""

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

WARM_START_LATEST = "latest"
"""`run --warm-start` value that starts from the latest blessed model of the run root."""
WARM_START_BASE = "base"
"""`run --warm-start` value that starts from the shipped base model of the run's model."""
