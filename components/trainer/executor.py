"""Trainer executor: TFX's GenericExecutor (which calls run_fn), then the training outcome
recorded on the Model artifact, so ML Metadata (lineage, the run summary) holds it."""

from __future__ import annotations

from tfx.components.trainer import executor as trainer_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from ctdenoise.contract.names import MODEL_METADATA_FILE
from ctdenoise.storage import files


class Executor(trainer_executor.GenericExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict["model"])
        metadata = files.read_json(files.join(path_utils.serving_model_dir(model.uri), MODEL_METADATA_FILE))
        train = metadata["train"]
        model.set_json_value_custom_property("hparams", metadata["hparams"])
        model.set_int_custom_property("train_steps", train["steps"])
        model.set_json_value_custom_property("final_losses", train["losses"])
        model.set_json_value_custom_property("psnr", train.get("psnr", {}))
        model.set_float_custom_property("train_seconds", train["seconds"])
        model.set_string_custom_property("tensorboard_dir", train["tensorboard_dir"])
