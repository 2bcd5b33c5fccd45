"""HUGate executor: stop the pipeline before training when the data is wrong."""

from __future__ import annotations

import json

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from ctdenoise.components.hu_gate.checks import (
    GateThresholds,
    failure_text,
    gate_problems,
    hu_overview,
    load_statistics,
)
from ctdenoise.storage import files


class HUGateError(RuntimeError):
    """The data failed the gate; the message is the one-line reason."""


class Executor(base_executor.BaseExecutor):
    """Checks every split; passes the schema on (the Trainer's input) only when all pass."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        statistics = artifact_utils.get_single_instance(input_dict["statistics"])
        anomalies = artifact_utils.get_single_instance(input_dict["anomalies"])
        schema_in = artifact_utils.get_single_instance(input_dict["schema"])
        schema_out = artifact_utils.get_single_instance(output_dict["validated_schema"])
        thresholds = GateThresholds.from_json(exec_properties.get("thresholds", ""))
        splits = {
            split: (artifact_utils.get_split_uri([statistics], split), artifact_utils.get_split_uri([anomalies], split))
            for split in artifact_utils.decode_split_names(statistics.split_names)
        }
        problems = gate_problems(splits, thresholds)
        if problems:
            raise HUGateError(failure_text(problems))
        files.copy_tree(schema_in.uri, schema_out.uri)
        schema_out.set_string_custom_property("hu_gate", "passed")  # the folder must hold only the schema
        schema_out.set_json_value_custom_property("hu_gate_thresholds", json.loads(thresholds.to_json()))
        schema_out.set_json_value_custom_property(
            "hu_summary", {split: hu_overview(load_statistics(stats_uri)) for split, (stats_uri, _) in splits.items()}
        )
