"""HUGate: a TFX component whose output schema the Trainer requires, so a failed gate
means no training run."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from ctdenoise.components.hu_gate import executor
from ctdenoise.components.hu_gate.checks import GateThresholds


class HUGateSpec(ComponentSpec):
    PARAMETERS = {"thresholds": ExecutionParameter(type=str)}
    INPUTS = {
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
    }
    OUTPUTS = {"validated_schema": ChannelParameter(type=standard_artifacts.Schema)}


class HUGate(base_component.BaseComponent):
    """Fails with a one-line reason on anomalies or implausible HU; else re-publishes the schema."""

    SPEC_CLASS = HUGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(
        self,
        statistics: types.BaseChannel,
        anomalies: types.BaseChannel,
        schema: types.BaseChannel,
        thresholds: GateThresholds = GateThresholds(),
    ):
        super().__init__(
            HUGateSpec(
                statistics=statistics,
                anomalies=anomalies,
                schema=schema,
                thresholds=thresholds.to_json(),
                validated_schema=types.Channel(type=standard_artifacts.Schema),
            )
        )
