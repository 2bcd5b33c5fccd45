"""Upload the compiled pipeline to Kubeflow Pipelines 2 with the kfp client, and start runs.

The first upload creates the pipeline; later ones add a version to it (named by time), so
runs stay attached to the spec they ran. Every failure becomes one line naming the
endpoint: unreachable, refused (authentication), or the server's own reason.
"""

from __future__ import annotations

import datetime
import logging
import re
from dataclasses import dataclass
from pathlib import Path


class DeployError(RuntimeError):
    """Kubeflow Pipelines could not be reached or refused the request; one line."""


@dataclass(frozen=True)
class Deployment:
    pipeline_id: str
    version_id: str
    run_id: str | None
    url: str


def deploy(
    spec_file: Path,
    endpoint: str,
    pipeline_name: str,
    run: bool = False,
    experiment: str = "ctdenoise",
    namespace: str | None = None,
    pipeline_root: str | None = None,
) -> Deployment:
    """Upload `spec_file` as a new pipeline or a new version of it; with `run`, start a run
    writing its artifacts under `pipeline_root` (default: the spec's defaultPipelineRoot)."""
    import kfp

    logging.getLogger("urllib3.connectionpool").disabled = True  # retry chatter; the failure is reported once
    try:
        client = kfp.Client(host=endpoint, namespace=namespace or "kubeflow")
        pipeline_id = client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(
                str(spec_file), pipeline_name=pipeline_name, namespace=namespace
            ).pipeline_id
            version_id = client.list_pipeline_versions(pipeline_id).pipeline_versions[0].pipeline_version_id
        else:
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
            version_id = client.upload_pipeline_version(
                str(spec_file),
                pipeline_version_name=f"{pipeline_name}-{stamp}",
                pipeline_id=pipeline_id,
            ).pipeline_version_id
        run_id = None
        if run:
            experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
            run_id = client.run_pipeline(
                experiment_id,
                f"{pipeline_name} {version_id}",
                pipeline_id=pipeline_id,
                version_id=version_id,
                pipeline_root=pipeline_root,
            ).run_id
    except DeployError:
        raise
    except Exception as exc:  # the kfp client raises urllib3, kfp_server_api and auth errors
        raise DeployError(f"Kubeflow Pipelines at {endpoint}: {_reason(exc)}") from None
    return Deployment(pipeline_id, version_id, run_id, f"{endpoint.rstrip('/')}/#/pipelines/details/{pipeline_id}")


def _reason(exc: Exception) -> str:
    """The useful part of a kfp client error."""
    status = getattr(exc, "status", None)
    if status:
        body = " ".join(str(getattr(exc, "body", "") or getattr(exc, "reason", "")).split())
        return f"refused the request (HTTP {status}: {body[:200]})"
    text = " ".join(str(exc).split())
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if errno or "Max retries" in text or "timed out" in text:
        return f"unreachable ({errno.group(0) if errno else text[:160]})"
    return f"{type(exc).__name__}: {text[:200]}"
