"""`create_pipeline()`: the one pipeline factory every orchestrator runner builds from."""
from __future__ import annotations

from typing import Any

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx

from components.dicom_example_gen.component import DicomExampleGen
from components.evaluation.eval_config import eval_config
from components.evaluation.thresholds import BlessingThresholds
from components.dicom_example_gen.layout import Layout
from components.features import validated_feature_names
from components.hu_gate.checks import GateThresholds
from components.hu_gate.component import HUGate
from pipeline import configs
from trainer_module import hparams as hparams_lib
from trainer_module import run, tfx_executor


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    until: str = "validate",
    layout: Layout = Layout(),
    eval_fraction: float = configs.EVAL_FRACTION,
    gate_thresholds: GateThresholds = GateThresholds(),
    input_fingerprint: str = "",
    hparams: dict[str, Any] | None = None,
    serving_dir: str = "",
    schema_file: str = str(configs.SCHEMA_FILE),
    blessing: BlessingThresholds = BlessingThresholds(),
    metadata_connection_config: Any = None,
    beam_pipeline_args: list[str] | None = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
    """The ctdenoise pipeline up to stage `until` (one of configs.STAGES).

    `serving_dir` (needed from stage "push" on) is where Pusher writes blessed models;
    `schema_file` is the curated schema as the orchestrator's workers see it.
    """
    if until not in configs.STAGES:
        raise ValueError(f"unknown stage {until!r}; choose one of {', '.join(configs.STAGES)}")
    stage = configs.STAGES.index(until)
    if stage >= configs.STAGES.index("push") and not serving_dir:
        raise ValueError("a pipeline that pushes needs serving_dir")
    ingest = DicomExampleGen(data_root=data_root, layout=layout, eval_fraction=eval_fraction,
                             input_fingerprint=input_fingerprint).with_id("DicomExampleGen")
    examples = ingest.outputs["examples"]
    components = [ingest]
    if stage >= configs.STAGES.index("validate"):
        components += _validation(examples, gate_thresholds, schema_file)
    if stage >= configs.STAGES.index("train"):
        trainer = _trainer(examples, components[-1].outputs["validated_schema"],
                           hparams or hparams_lib.to_dict(hparams_lib.preset(configs.DEFAULT_PRESET)))
        components.append(trainer)
    if stage >= configs.STAGES.index("evaluate"):
        components += evaluation_components(examples, trainer.outputs["model"], blessing)
    if stage >= configs.STAGES.index("push"):
        components.append(blessed_pusher(trainer.outputs["model"], components[-1].outputs["blessing"], serving_dir))
    return tfx.dsl.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or configs.BEAM_PIPELINE_ARGS,
    )


def _validation(examples, thresholds: GateThresholds, schema_file: str) -> list:
    """TFDV statistics of the scalar features, the curated schema, anomalies, the HU gate."""
    statistics = tfx.components.StatisticsGen(
        examples=examples,
        stats_options=tfdv.StatsOptions(feature_allowlist=validated_feature_names()),
    )
    schema = tfx.components.ImportSchemaGen(schema_file=schema_file)
    validator = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    )
    gate = HUGate(
        statistics=statistics.outputs["statistics"],
        anomalies=validator.outputs["anomalies"],
        schema=schema.outputs["schema"],
        thresholds=thresholds,
    )
    return [statistics, schema, validator, gate]


def _trainer(examples, validated_schema, hparams: dict[str, Any]):
    """The standard Trainer running our run_fn; the gate's schema is a required input, so
    the Trainer cannot run on data that failed validation."""
    total_steps = hparams_lib.from_dict(hparams).total_steps
    return tfx_executor.Trainer(
        run_fn="trainer_module.run.run_fn",
        examples=examples,
        schema=validated_schema,
        train_args=tfx.proto.TrainArgs(num_steps=total_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=run.EVAL_SLICES),
        custom_config={run.HPARAMS_KEY: hparams},
    )


def evaluation_components(examples, model, blessing: BlessingThresholds = BlessingThresholds()) -> list:
    """The standard Evaluator on the eval split's whole slices, with TFMA image metrics
    (components/evaluation). It blesses the candidate when it beats the LDCT baseline by
    the PSNR margin without losing SSIM, and is no worse than the latest blessed model."""
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("LatestBlessedModelResolver")
    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=model,
        baseline_model=latest_blessed.outputs["model"],
        example_splits=["eval"],
        eval_config=eval_config(blessing),
    )
    return [latest_blessed, evaluator]


def blessed_pusher(model, blessing, serving_dir: str):
    """The standard Pusher: copies the generator to a new numbered version under
    `serving_dir`, only when the Evaluator blessed it."""
    return tfx.components.Pusher(
        model=model,
        model_blessing=blessing,
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_dir)
        ),
    )
