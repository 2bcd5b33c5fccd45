"""The container entrypoint of every ctdenoise step on Kubeflow Pipelines: TFX's own
(`tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`), with what a pod that
reads and writes an S3 store or MinIO needs around it (docs/kubeflow.md):

- Keras 2 is chosen before TensorFlow loads (`ctdenoise.tensorflow_env`).
- tensorflow-io is imported when installed, so `s3://` works in TensorFlow, TFX, TFMA and
  TFDV (the endpoint comes from `S3_ENDPOINT`; `gs://` needs nothing).
- `minio://BUCKET/KEY`, the scheme Kubeflow Pipelines gives artifacts under its default
  pipeline root, is read as `s3://BUCKET/KEY` (MinIO speaks S3), and the executor output
  names the artifacts by their original `minio://` URIs again, so the launcher records
  and hands downstream exactly what it created.
- The process ends with os._exit: after tensorflow-io was used a normal exit aborts in the
  AWS SDK's destructors (exit 134, tensorflow/io#2039), which would fail the step.

Usage (what the compiled spec runs):
    python -m ctdenoise.kubeflow.entrypoint --executor_class_path CLASS --json_serialized_invocation_args '{{$}}' ...
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

import ctdenoise.tensorflow_env  # noqa: F401  (before TensorFlow is imported)

MINIO = "minio://"
S3 = "s3://"
INVOCATION_FLAG = "--json_serialized_invocation_args"


def main(argv: list[str]) -> int:
    """Run TFX's entrypoint on `argv` (without the program name); the exit status."""
    from ctdenoise.storage import files

    files.enable_object_stores()
    argv, output_file, renamed = _read_minio_as_s3(argv)

    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_entrypoint

    try:
        app.run(tfx_entrypoint.main, argv=[sys.argv[0], *argv], flags_parser=tfx_entrypoint._parse_flags)
        code = 0
    except SystemExit as exc:  # absl's app.run ends with sys.exit
        code = files.exit_code(exc)
    except BaseException:
        traceback.print_exc()
        code = 1
    if code == 0 and renamed:
        _name_outputs_as_given(output_file, renamed)
    return code


def _read_minio_as_s3(argv: list[str]) -> tuple[list[str], str, dict[str, str]]:
    """The arguments with every minio:// URI of the executor input (artifacts and string
    parameters) as s3://; the executor output file; s3:// URI → original minio:// URI."""
    if INVOCATION_FLAG not in argv[:-1]:
        return argv, "", {}
    at = argv.index(INVOCATION_FLAG) + 1
    invocation = json.loads(argv[at])
    renamed: dict[str, str] = {}

    def translate(value: Any) -> Any:
        if isinstance(value, str) and value.startswith(MINIO):
            renamed[S3 + value[len(MINIO) :]] = value
            return S3 + value[len(MINIO) :]
        if isinstance(value, str) and MINIO in value:  # a JSON parameter, such as the Pusher's destination
            return _translate_json(value, translate)
        if isinstance(value, dict):
            return {k: translate(v) for k, v in value.items()}
        if isinstance(value, list):
            return [translate(v) for v in value]
        return value

    for side in ("inputs", "outputs"):
        for artifact_list in invocation.get(side, {}).get("artifacts", {}).values():
            for artifact in artifact_list.get("artifacts", []):
                artifact["uri"] = translate(artifact.get("uri", ""))
    parameters = invocation.get("inputs", {}).get("parameterValues", {})
    invocation.setdefault("inputs", {})["parameterValues"] = translate(parameters) if parameters else parameters
    output_file = invocation.get("outputs", {}).get("outputFile", "")
    return [*argv[:at], json.dumps(invocation), *argv[at + 1 :]], output_file, renamed


def _translate_json(text: str, translate: Callable[[Any], Any]) -> str:
    """A JSON string parameter with its minio:// URIs translated; other text as it is."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return json.dumps(translate(value))


def _name_outputs_as_given(output_file: str, renamed: dict[str, str]) -> None:
    """Put the original minio:// URIs back into the executor output the launcher reads."""
    from ctdenoise.storage import files

    if not output_file or not files.exists(output_file):
        return
    output = json.loads(files.read_text(output_file))
    for artifact_list in output.get("artifacts", {}).values():
        for artifact in artifact_list.get("artifacts", []):
            artifact["uri"] = renamed.get(artifact.get("uri", ""), artifact.get("uri", ""))
    files.write_text(output_file, json.dumps(output))


if __name__ == "__main__":
    from ctdenoise.storage.files import exit_process

    status = main(sys.argv[1:])
    sys.exit(exit_process(status))
