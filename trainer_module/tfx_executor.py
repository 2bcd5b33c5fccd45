"""The Trainer component: TFX's standard Trainer, whose executor (TFX's GenericExecutor, which
calls run_fn) also records the hyperparameters and training outcome on the Model artifact so
ML Metadata lineage can show them."""
from __future__ import annotations

import json
import os

from tfx import v1 as tfx
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.utils import path_utils

from trainer_module.export import METADATA_FILE


class Executor(trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict["model"])
        with open(os.path.join(path_utils.serving_model_dir(model.uri), METADATA_FILE)) as f:
            metadata = json.load(f)
        model.set_json_value_custom_property("hparams", metadata["hparams"])
        model.set_int_custom_property("train_steps", metadata["train"]["steps"])
        model.set_json_value_custom_property("final_losses", metadata["train"]["losses"])


class Trainer(tfx.components.Trainer):
    """The standard Trainer with the executor above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
