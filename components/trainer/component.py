"""Trainer: TFX's standard Trainer running `ctdenoise.trainer_module.run.run_fn`, built from one `HParams`."""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.types import BaseChannel

from ctdenoise.components.trainer import executor
from ctdenoise.trainer_module import hparams as hparams_lib
from ctdenoise.trainer_module.hparams import HParams
from ctdenoise.trainer_module.run import HPARAMS_KEY

RUN_FN = "ctdenoise.trainer_module.run.run_fn"


class Trainer(tfx.components.Trainer):
    """Trains the chosen model (`HParams.model`) on the examples once the HU gate has passed them.

    The gate's validated schema is a required input, so the Trainer cannot run on data that
    failed validation. The hyperparameters are serialised here, once, into the Trainer's
    custom_config; TrainArgs and EvalArgs are derived from them (see trainer_module.run).
    """

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        examples: BaseChannel,
        validated_schema: BaseChannel,
        hparams: HParams,
        eval_slices: int,
        base_model: BaseChannel | None = None,
    ):
        """`base_model`, when given, is the exported model whose generator training starts from
        (`trainer_module.warm_start`); ML Metadata records it as the Trainer's input."""
        super().__init__(
            run_fn=RUN_FN,
            examples=examples,
            schema=validated_schema,
            base_model=base_model,
            train_args=tfx.proto.TrainArgs(num_steps=hparams.total_steps),
            eval_args=tfx.proto.EvalArgs(num_steps=eval_slices),
            custom_config={HPARAMS_KEY: hparams_lib.to_dict(hparams)},
        )
