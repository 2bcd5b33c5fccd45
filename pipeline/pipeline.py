"""`create_pipeline()`: the one pipeline factory every orchestrator runner builds from.

As in TFX's templates, each step is a named variable wired to the outputs of the steps
before it; `until` then keeps the steps of the stages up to and including that one.
"""

from __future__ import annotations

from typing import Any

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx import version as tfx_version
from tfx.types import BaseChannel

from ctdenoise.components.dicom_example_gen.component import DicomExampleGen
from ctdenoise.components.dicom_example_gen.layout import Layout
from ctdenoise.components.evaluation.eval_config import eval_config
from ctdenoise.components.evaluation.thresholds import BlessingThresholds
from ctdenoise.components.hu_gate.checks import GateThresholds
from ctdenoise.components.hu_gate.component import HUGate
from ctdenoise.components.pusher.component import Pusher
from ctdenoise.components.trainer.component import Trainer
from ctdenoise.contract.features import validated_feature_names
from ctdenoise.dicomio.reader import ReadOptions
from ctdenoise.metadata import names
from ctdenoise.pipeline import configs
from ctdenoise.trainer_module.hparams import TENSORBOARD_EVAL_SLICES, HParams


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    hparams: HParams,
    serving_dir: str,
    until: str = "push",
    layout: Layout = Layout(),
    read_options: ReadOptions = ReadOptions(),
    eval_fraction: float = configs.EVAL_FRACTION,
    gate_thresholds: GateThresholds = GateThresholds(),
    blessing: BlessingThresholds = BlessingThresholds(),
    input_fingerprint: str = "",
    schema_file: str = str(configs.SCHEMA_FILE),
    trainer_platform_config: Any | None = None,
    metadata_connection_config: Any = None,
    beam_pipeline_args: list[str] | None = None,
    enable_cache: bool = True,
    latest_blessed_baseline: bool = True,
    warm_start: str | None = None,
) -> tfx.dsl.Pipeline:
    """The ctdenoise pipeline up to stage `until` (one of configs.STAGES).

    `serving_dir` is where Pusher writes blessed models; `read_options` bounds what a DICOM
    file may be (decoded size, orientation); `schema_file` is the curated schema
    as the orchestrator's workers see it; `trainer_platform_config` is the orchestrator's
    resource request for the Trainer (e.g. Kubeflow's CPU, memory and GPUs). Without
    `latest_blessed_baseline` the Evaluator does not compare with the latest blessed model
    (no resolver node: open-source Kubeflow Pipelines cannot run one, docs/kubeflow.md).
    `warm_start` starts the Trainer's generator from a model (docs/design.md, "Warm start"):
    `configs.WARM_START_LATEST`, the latest blessed model, or the URI of a model artifact folder (one
    with the Trainer's Format-Serving layout); the Evaluator then compares the candidate with
    that model instead of the latest blessed one.
    """
    if until not in configs.STAGES:
        raise ValueError(f"unknown stage {until!r}; choose one of {', '.join(configs.STAGES)}")
    if warm_start == configs.WARM_START_LATEST and not latest_blessed_baseline:
        raise ValueError("a warm start from the latest blessed model needs its resolver; name a model folder instead")

    example_gen = DicomExampleGen(
        data_root=data_root,
        layout=layout,
        eval_fraction=eval_fraction,
        input_fingerprint=input_fingerprint,
        read_options=read_options,
    ).with_id(names.EXAMPLE_GEN_ID)
    statistics_gen = tfx.components.StatisticsGen(
        examples=example_gen.outputs["examples"],
        stats_options=tfdv.StatsOptions(feature_allowlist=validated_feature_names()),
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    hu_gate = HUGate(
        statistics=statistics_gen.outputs["statistics"],
        anomalies=example_validator.outputs["anomalies"],
        schema=schema_gen.outputs["schema"],
        thresholds=gate_thresholds,
    ).with_id(names.HU_GATE_ID)
    baseline = build_baseline(warm_start, latest_blessed_baseline)
    trainer = Trainer(
        examples=example_gen.outputs["examples"],
        validated_schema=hu_gate.outputs["validated_schema"],
        hparams=hparams,
        eval_slices=TENSORBOARD_EVAL_SLICES,
        base_model=_model_of(baseline) if warm_start else None,
    ).with_id(names.TRAINER_ID)
    if trainer_platform_config is not None:
        trainer.with_platform_config(trainer_platform_config)
    evaluator = build_evaluator(
        example_gen.outputs["examples"],
        trainer.outputs["model"],
        blessing,
        baseline_model=_model_of(baseline) if baseline else None,
    )
    pusher = build_pusher(trainer.outputs["model"], evaluator.outputs["blessing"], serving_dir)

    starting = [baseline] if baseline else []
    by_stage = {
        "ingest": [example_gen],
        "validate": [statistics_gen, schema_gen, example_validator, hu_gate],
        "train": [*starting, trainer] if warm_start else [trainer],
        "evaluate": [evaluator] if warm_start else [*starting, evaluator],
        "push": [pusher],
    }
    stages = configs.STAGES[: configs.STAGES.index(until) + 1]
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[component for stage in stages for component in by_stage[stage]],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or configs.BEAM_PIPELINE_ARGS,
    )


def build_baseline(warm_start: str | None, latest_blessed: bool = True):
    """The node that gives the model the candidate is compared with, and starts from when
    `warm_start` is set: an Importer of the model folder `warm_start` names, else the latest
    blessed model's resolver (`latest_blessed`), else None."""
    if warm_start and warm_start != configs.WARM_START_LATEST:
        return tfx.dsl.Importer(
            source_uri=warm_start,
            artifact_type=tfx.types.standard_artifacts.Model,
            # read as a Model written by this TFX: its SavedModel under Format-Serving
            custom_properties={"tfx_version": tfx_version.__version__},
        ).with_id(names.WARM_START_IMPORTER_ID)
    if not latest_blessed:
        return None
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(names.BASELINE_RESOLVER_ID)


def _model_of(baseline) -> BaseChannel:
    """The baseline node's Model channel (an Importer names it `result`)."""
    return baseline.outputs["result" if isinstance(baseline, tfx.dsl.Importer) else "model"]


def build_evaluator(examples, model, blessing: BlessingThresholds = BlessingThresholds(), baseline_model=None):
    """The standard Evaluator on the eval split's whole slices, with TFMA image metrics
    (components/evaluation). It blesses the candidate when it beats the LDCT as it is by the
    PSNR margin without losing SSIM, and, given `baseline_model`, is no worse than that model
    (the latest blessed one, or the one training started from)."""
    return tfx.components.Evaluator(
        examples=examples,
        model=model,
        baseline_model=baseline_model,
        example_splits=["eval"],
        eval_config=eval_config(blessing, with_baseline=baseline_model is not None),
    ).with_id(names.EVALUATOR_ID)


def build_pusher(model, blessing, serving_dir: str):
    """The Pusher: copies the generator to a new numbered version under `serving_dir`, whole
    or not at all, only when the Evaluator blessed it."""
    return Pusher(
        model=model,
        model_blessing=blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)
        ),
    ).with_id(names.PUSHER_ID)
