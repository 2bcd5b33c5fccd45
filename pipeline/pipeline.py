"""`create_pipeline()`: the one pipeline factory every orchestrator runner builds from.

As in TFX's templates, each step is a named variable wired to the outputs of the steps
before it; `until` then keeps the steps of the stages up to and including that one.
"""

from __future__ import annotations

from typing import Any

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx

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
) -> tfx.dsl.Pipeline:
    """The ctdenoise pipeline up to stage `until` (one of configs.STAGES).

    `serving_dir` is where Pusher writes blessed models; `read_options` bounds what a DICOM
    file may be (decoded size, orientation); `schema_file` is the curated schema
    as the orchestrator's workers see it; `trainer_platform_config` is the orchestrator's
    resource request for the Trainer (e.g. Kubeflow's CPU, memory and GPUs). Without
    `latest_blessed_baseline` the Evaluator does not compare with the latest blessed model
    (no resolver node: open-source Kubeflow Pipelines cannot run one, docs/kubeflow.md).
    """
    if until not in configs.STAGES:
        raise ValueError(f"unknown stage {until!r}; choose one of {', '.join(configs.STAGES)}")

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
    trainer = Trainer(
        examples=example_gen.outputs["examples"],
        validated_schema=hu_gate.outputs["validated_schema"],
        hparams=hparams,
        eval_slices=TENSORBOARD_EVAL_SLICES,
    ).with_id(names.TRAINER_ID)
    if trainer_platform_config is not None:
        trainer.with_platform_config(trainer_platform_config)
    evaluation = build_evaluator(
        example_gen.outputs["examples"], trainer.outputs["model"], blessing, baseline=latest_blessed_baseline
    )
    evaluator = evaluation[-1]
    pusher = build_pusher(trainer.outputs["model"], evaluator.outputs["blessing"], serving_dir)

    by_stage = {
        "ingest": [example_gen],
        "validate": [statistics_gen, schema_gen, example_validator, hu_gate],
        "train": [trainer],
        "evaluate": evaluation,
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


def build_evaluator(examples, model, blessing: BlessingThresholds = BlessingThresholds(), baseline: bool = True):
    """[latest blessed model resolver, Evaluator]: the standard Evaluator on the eval split's
    whole slices, with TFMA image metrics (components/evaluation). It blesses the candidate
    when it beats the LDCT as it is by the PSNR margin without losing SSIM, and is no worse
    than the latest blessed model (without `baseline`: [Evaluator], and no such comparison)."""
    if not baseline:
        return [
            tfx.components.Evaluator(
                examples=examples, model=model, example_splits=["eval"], eval_config=eval_config(blessing)
            ).with_id(names.EVALUATOR_ID)
        ]
    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id(names.BASELINE_RESOLVER_ID)
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=model,
        baseline_model=model_resolver.outputs["model"],
        example_splits=["eval"],
        eval_config=eval_config(blessing),
    ).with_id(names.EVALUATOR_ID)
    return [model_resolver, evaluator]


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
