"""Thin local runner: the pipeline on LocalDagRunner with SQLite ML Metadata under the run root."""
from __future__ import annotations

from pathlib import Path

from tfx import v1 as tfx

from components.dicom_example_gen.layout import Layout
from components.storage import fingerprint
from components.evaluation.thresholds import BlessingThresholds
from pipeline import configs
from pipeline.pipeline import create_pipeline


def metadata_config(run_root: Path):
    """SQLite ML Metadata connection config of a run root (created when missing)."""
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(str(configs.metadata_path(run_root)))


def run_local(data_root: Path, run_root: Path, until: str, layout: Layout = Layout(),
              hparams: dict | None = None, beam_pipeline_args: list[str] | None = None,
              blessing: BlessingThresholds = BlessingThresholds()) -> None:
    """Run the pipeline up to `until`; cached steps are reused when data and code are unchanged."""
    run_root.mkdir(parents=True, exist_ok=True)
    pipeline = create_pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=str(configs.pipeline_root(run_root).resolve()),
        data_root=str(data_root.resolve()),
        until=until,
        layout=layout,
        hparams=hparams,
        serving_dir=str(configs.serving_dir(run_root).resolve()),
        blessing=blessing,
        input_fingerprint=fingerprint(str(data_root)),
        metadata_connection_config=metadata_config(run_root),
        beam_pipeline_args=beam_pipeline_args,
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
