"""Thin local runner: the pipeline on LocalDagRunner with SQLite ML Metadata under the run root."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, StandardOptions
from tfx import v1 as tfx
from tfx.utils import dependency_utils

from ctdenoise.components.dicom_example_gen.layout import Layout
from ctdenoise.components.evaluation.thresholds import BlessingThresholds
from ctdenoise.dicomio.reader import ReadOptions
from ctdenoise.metadata import names, recovery
from ctdenoise.metadata.store import StoreAddress
from ctdenoise.pipeline.configs import WARM_START_LATEST
from ctdenoise.pipeline.pipeline import create_pipeline
from ctdenoise.pipeline.warm_start import stage
from ctdenoise.storage.files import absolute, fingerprint
from ctdenoise.storage.lock import exclusive
from ctdenoise.trainer_module.hparams import HParams


def run_local(
    data_root: str | Path,
    run_root: Path,
    until: str,
    hparams: HParams,
    layout: Layout = Layout(),
    beam_pipeline_args: list[str] | None = None,
    read_options: ReadOptions = ReadOptions(),
    blessing: BlessingThresholds = BlessingThresholds(),
    progress: Callable[[str], None] = print,
    pipeline_root: str | None = None,
    serving_dir: str | None = None,
    address: StoreAddress = StoreAddress(),
    warm_start: str | None = None,
) -> None:
    """Run the pipeline up to `until`; cached steps are reused when data and code are unchanged.

    The data root, the pipeline root (default RUN_ROOT/pipeline) and the serving folder
    (default RUN_ROOT/serving) may each be a folder or an object-store URL; ML Metadata
    stays in RUN_ROOT/metadata.sqlite unless `address` names a shared database, where the
    root's runs form a pipeline of their own (`ctdenoise.metadata.store`). One run at a time per
    run root: a second one raises `ctdenoise.storage.lock.Busy` at once. Work a killed run left
    unfinished is marked abandoned first (`ctdenoise.metadata.recovery`). `warm_start` is
    `WARM_START_LATEST` or a model PATH, whose SavedModel is first copied under the pipeline
    root (`ctdenoise.pipeline.warm_start`).
    """
    pipeline_root = absolute(pipeline_root or names.pipeline_root(run_root))
    serving_dir = absolute(serving_dir or names.serving_dir(run_root))
    with exclusive(run_root, "ctdenoise run"):
        recovery.recover(run_root, progress, pipeline_root, address)
        if warm_start and warm_start != WARM_START_LATEST:
            warm_start = stage(warm_start, pipeline_root)
        _run(
            absolute(data_root),
            run_root,
            until,
            hparams,
            layout,
            read_options,
            beam_pipeline_args,
            blessing,
            pipeline_root,
            serving_dir,
            address,
            warm_start,
        )


def _run(
    data_root: str,
    run_root: Path,
    until: str,
    hparams: HParams,
    layout: Layout,
    read_options: ReadOptions,
    beam_pipeline_args: list[str] | None,
    blessing: BlessingThresholds,
    pipeline_root: str,
    serving_dir: str,
    address: StoreAddress,
    warm_start: str | None,
) -> None:
    pipeline = create_pipeline(
        pipeline_name=address.pipeline_name(run_root),
        pipeline_root=pipeline_root,
        data_root=data_root,
        hparams=hparams,
        serving_dir=serving_dir,
        until=until,
        layout=layout,
        read_options=read_options,
        blessing=blessing,
        input_fingerprint=fingerprint(data_root),
        metadata_connection_config=address.connection_config(run_root),
        beam_pipeline_args=beam_pipeline_args,
        warm_start=warm_start,
    )
    with _no_tfx_sdist_for_local_workers():
        tfx.orchestration.LocalDagRunner().run(pipeline)


@contextlib.contextmanager
def _no_tfx_sdist_for_local_workers() -> Iterator[None]:
    """Every Beam executor builds an sdist of the installed TFX (a 42 MB copy in a temporary
    folder it never deletes) so that remote Beam workers can import TFX. Workers that run in
    this process or its children import the installed TFX: the DirectRunner's, and any
    runner's with `--environment_type=LOOPBACK` (e.g. the PortableRunner on a local job
    server); for them local runs skip the build. Other runners (Dataflow, Flink, Spark)
    still get it unless their arguments name the dependencies (--extra_package,
    --setup_file, --requirements_file or --sdk_container_image)."""
    build = dependency_utils.make_beam_dependency_flags

    def flags(beam_pipeline_args: list[str]) -> list[str]:
        options = PipelineOptions(beam_pipeline_args)
        loopback = (options.view_as(PortableOptions).environment_type or "").upper() == "LOOPBACK"
        local = loopback or options.view_as(StandardOptions).runner in (None, "DirectRunner")
        return beam_pipeline_args if local else build(beam_pipeline_args)

    dependency_utils.make_beam_dependency_flags = flags
    try:
        yield
    finally:
        dependency_utils.make_beam_dependency_flags = build
