"""DicomExampleGen: a custom ExampleGen-style TFX component for CT DICOM folders."""

from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from ctdenoise.components.dicom_example_gen import executor
from ctdenoise.components.dicom_example_gen.layout import Layout
from ctdenoise.contract import features
from ctdenoise.dicomio.reader import ReadOptions


class DicomExampleGenSpec(ComponentSpec):
    """No input artifacts: the data root is a parameter, its fingerprint the cache key."""

    PARAMETERS = {
        "data_root": ExecutionParameter(type=str),
        "layout": ExecutionParameter(type=str),
        "eval_fraction": ExecutionParameter(type=float),
        "read_options": ExecutionParameter(type=str, optional=True),
        "input_fingerprint": ExecutionParameter(type=str, optional=True),
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class DicomExampleGen(base_beam_component.BaseBeamComponent):
    """Ingests `<patient>/<dose>/` DICOM folders into the standard `Examples` artifact;
    `read_options` bounds what a file may be (size, orientation: dicomio.reader.ReadOptions)."""

    SPEC_CLASS = DicomExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        data_root: str,
        layout: Layout = Layout(),
        eval_fraction: float = 0.25,
        input_fingerprint: str = "",
        read_options: ReadOptions = ReadOptions(),
    ):
        super().__init__(
            DicomExampleGenSpec(
                data_root=data_root,
                layout=layout.to_json(),
                eval_fraction=eval_fraction,
                read_options=read_options.to_json(),
                # the contract's version too: examples written under another contract are not reused
                input_fingerprint=f"contract {features.CONTRACT_VERSION}|{input_fingerprint}",
                examples=types.Channel(type=standard_artifacts.Examples),
            )
        )
