"""Kubeflow Pipelines runner: the same `create_pipeline()` as the local runner, compiled by
`KubeflowV2DagRunner` into the KFP v2 pipeline IR (JSON) that Kubeflow Pipelines 2.x runs.

Use it through `ctdenoise kubeflow compile|create`, or run this file directly: as a script it
takes its settings from `CTDENOISE_*` environment variables (see `KubeflowSettings.from_env`),
which is also how `tfx pipeline create --engine vertex --pipeline_path kubeflow/runner.py`
runs it (that command executes the file with no arguments and keeps the JSON it writes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import absl.logging
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner
from tfx.orchestration.kubeflow.v2.pipeline_builder import DEFAULT_IMAGE_PATH_KEY as DEFAULT_IMAGE_KEY

from ctdenoise.components.evaluation.thresholds import BlessingThresholds
from ctdenoise.kubeflow.entrypoint import MINIO, S3
from ctdenoise.metadata import names
from ctdenoise.pipeline import configs
from ctdenoise.pipeline.pipeline import create_pipeline
from ctdenoise.pipeline.warm_start import stage
from ctdenoise.storage.files import fingerprint, is_remote, isdir, needs_tensorflow_io
from ctdenoise.trainer_module.models import configure

IMAGE_SOURCE_DIR = "/ctdenoise"
"""Where the Dockerfiles copy this repository inside the component image."""
ENTRYPOINT = ["python", "-m", "ctdenoise.kubeflow.entrypoint"]
"""What a KFP v2 pod runs: TFX's container entrypoint (given the executor class and the
executor input JSON that KFP substitutes for `{{$}}`) inside our thin wrapper, which
enables s3:// and minio:// and exits cleanly after tensorflow-io (kubeflow/entrypoint.py)."""
ResourceSpec: TypeAlias = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec


@dataclass(frozen=True)
class KubeflowSettings:
    """Where a Kubeflow run reads and writes, and what it runs on. Paths are as the pods
    see them: object-store URLs TensorFlow can write (gs://, or s3:// with tensorflow-io
    and S3_ENDPOINT set, which is how MinIO is reached; minio:// is read as s3://) or a
    volume mounted in every pod."""

    image: str
    trainer_image: str = ""
    """Image of the Trainer step only, e.g. the CUDA build of kubeflow/Dockerfile.gpu
    (default: `image`)."""
    storage: str = "gs://ctdenoise"
    """Default parent of the three locations below."""
    pipeline_root: str = ""
    data_root: str = ""
    serving_dir: str = ""
    preset: str = configs.KUBEFLOW_PRESET
    beam_args: tuple[str, ...] = ()
    """Beam arguments of every Beam step; pass e.g. --runner=DataflowRunner to scale out.
    Default: the DirectRunner on all of a pod's cores, in worker processes, or in threads
    when a location needs tensorflow-io (s3://, minio://): Beam's worker processes are
    fresh interpreters that have not loaded it, so the Evaluator's workers could not open
    a model in the bucket, and a worker that did load it would abort at exit."""
    trainer_cpu: float = 8.0
    trainer_memory_gb: float = 32.0
    trainer_gpus: int = 1
    gpu_type: str = "nvidia.com/gpu"
    """The accelerator's Kubernetes resource name (KFP) or Vertex type (e.g. NVIDIA_TESLA_T4)."""
    hparam_overrides: tuple[str, ...] = field(default_factory=tuple)
    blessing: BlessingThresholds = field(default_factory=BlessingThresholds)
    """The Evaluator's gate (docs/design.md, "Pipeline metrics and the blessing gate"), as `ctdenoise run
    --margin-db ...`."""
    latest_blessed_baseline: bool = True
    """Compare with the latest blessed model through TFX's resolver, which Vertex AI
    Pipelines runs and open-source Kubeflow Pipelines refuses (docs/kubeflow.md)."""
    warm_start: str = ""
    """What the Trainer's generators start from (docs/design.md, "Warm start"): the URI of a model
    artifact folder the pods can read (`stage_warm_start` puts one under the pipeline root),
    `latest` (the resolver's model, where it runs), or empty: from scratch."""

    def __post_init__(self) -> None:
        base = self.storage.rstrip("/")
        for name, default in (
            ("pipeline_root", f"{base}/pipeline"),
            ("data_root", f"{base}/dicom"),
            ("serving_dir", f"{base}/serving"),
        ):
            if not getattr(self, name):
                object.__setattr__(self, name, default)
        if not self.beam_args:
            locations = (self.pipeline_root, self.data_root, self.serving_dir)
            mode = "multi_threading" if any(uses_tensorflow_io(x) for x in locations) else "multi_processing"
            object.__setattr__(self, "beam_args", (f"--direct_running_mode={mode}", "--direct_num_workers=0"))

    @classmethod
    def from_env(cls) -> KubeflowSettings:
        """CTDENOISE_IMAGE (required), CTDENOISE_TRAINER_IMAGE, CTDENOISE_STORAGE,
        CTDENOISE_PIPELINE_ROOT, CTDENOISE_DATA_ROOT, CTDENOISE_SERVING_DIR, CTDENOISE_PRESET."""
        image = os.environ.get("CTDENOISE_IMAGE")
        if not image:
            raise SystemExit("set CTDENOISE_IMAGE to the component image, e.g. ghcr.io/you/ctdenoise:0.2.0")
        names = {
            "trainer_image": "TRAINER_IMAGE",
            "storage": "STORAGE",
            "pipeline_root": "PIPELINE_ROOT",
            "data_root": "DATA_ROOT",
            "serving_dir": "SERVING_DIR",
            "preset": "PRESET",
        }
        values: dict[str, Any] = {
            key: os.environ[f"CTDENOISE_{var}"] for key, var in names.items() if f"CTDENOISE_{var}" in os.environ
        }
        return cls(image=image, **values)


def build_pipeline(settings: KubeflowSettings):
    """`create_pipeline()` for Kubeflow: object-store paths, the schema inside the image, the
    Trainer's CPU, memory and GPU requests, the Evaluator's gate."""
    return create_pipeline(
        pipeline_name=names.PIPELINE_NAME,
        pipeline_root=settings.pipeline_root,
        data_root=settings.data_root,
        hparams=configure(settings.preset, settings.hparam_overrides),
        serving_dir=settings.serving_dir,
        input_fingerprint=_fingerprint(settings.data_root),
        schema_file=f"{IMAGE_SOURCE_DIR}/{configs.SCHEMA_FILE_IN_REPO}",
        trainer_platform_config=_trainer_resources(settings),
        beam_pipeline_args=list(settings.beam_args),
        blessing=settings.blessing,
        latest_blessed_baseline=settings.latest_blessed_baseline,
        warm_start=settings.warm_start or None,
    )


def stage_warm_start(path: str, pipeline_root: str) -> str:
    """The URI under `pipeline_root` of a copy of the SavedModel that `path` names, for the
    pipeline's Importer (`ctdenoise.pipeline.warm_start.stage`, once per content). A minio://
    root, which only the pods' entrypoint reads, is written through s3:// and named by its
    minio:// URI again."""
    if not pipeline_root.startswith(MINIO):
        return stage(path, pipeline_root)
    return MINIO + stage(path, S3 + pipeline_root[len(MINIO) :])[len(S3) :]


def compile_pipeline(settings: KubeflowSettings, out_file: Path) -> Path:
    """Write the pipeline IR (a KFP v2 `PipelineSpec`, JSON) to `out_file`.

    TFX's runner wraps the spec in a Vertex `PipelineJob`; Kubeflow Pipelines 2 uploads,
    and kfp's loader reads, the bare `PipelineSpec`, so that is what is written, with the
    pipeline root as its `defaultPipelineRoot` (TFX keeps it in the job's runtime config,
    which the bare spec would lose: KFP would then write to its own default root).
    """
    absl.logging.set_verbosity(absl.logging.ERROR)  # TFX 1.16 warns "DEFAULT_IMAGE_PATH_KEY is
    # not found" exactly when it is found (an inverted check in pipeline_builder)
    job = _runner(settings, out_file).run(build_pipeline(settings), write_out=False)
    spec = {**job["pipelineSpec"], "defaultPipelineRoot": settings.pipeline_root}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return out_file


def _runner(settings: KubeflowSettings, out_file: Path) -> kubeflow_v2_dag_runner.KubeflowV2DagRunner:
    images = {DEFAULT_IMAGE_KEY: settings.image, names.TRAINER_ID: settings.trainer_image or settings.image}
    return kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            display_name=names.PIPELINE_NAME,
            default_image=images,
            default_commands=ENTRYPOINT,
            # Schema 2.1: parameters as `parameterValues` with their input spec, which is what
            # the KFP 2 launcher provides (with 2.0 TFX's entrypoint reads a field KFP 2 leaves empty).
            use_pipeline_spec_2_1=True,
        ),
        output_dir=str(out_file.parent),
        output_filename=out_file.name,
    )


def _trainer_resources(settings: KubeflowSettings) -> ResourceSpec:
    spec = ResourceSpec(cpu_limit=settings.trainer_cpu, memory_limit=settings.trainer_memory_gb)
    if settings.trainer_gpus:
        spec.accelerator.type = settings.gpu_type
        spec.accelerator.count = settings.trainer_gpus
    return spec


def uses_tensorflow_io(location: str) -> bool:
    """Whether TensorFlow reaches `location` only through tensorflow-io: what storage.files says
    needs it, and minio:// (read as s3:// by kubeflow/entrypoint.py)."""
    return location.startswith(MINIO) or needs_tensorflow_io([location])


def _fingerprint(data_root: str) -> str:
    """A local data root's fingerprint (the ingestion's cache key). A bucket is not listed at
    compile time: give each data version its own data root, or turn caching off in KFP."""
    return "" if is_remote(data_root) or not isdir(data_root) else fingerprint(data_root)


if __name__ == "__main__":  # TFX's own output: the PipelineJob JSON that Vertex AI Pipelines runs
    env_settings = KubeflowSettings.from_env()
    out = Path(os.environ.get("CTDENOISE_PIPELINE_FILE", f"{names.PIPELINE_NAME}_job.json"))
    _runner(env_settings, out).run(build_pipeline(env_settings))
