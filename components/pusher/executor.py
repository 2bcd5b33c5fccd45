"""Pusher executor: a blessed model is copied under a hidden name beside its version folder,
loaded to check that it serves, then renamed into place (`ctdenoise.storage.publish`).

TFX's own Pusher copies straight into the version folder, so a full disk or a kill leaves
a version holding a truncated saved_model.pb, which a model server watching the folder
and `denoise --model latest` would load.
"""

from __future__ import annotations

import time

from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from ctdenoise.contract.names import EXAMPLES_SIGNATURE, MODEL_METADATA_FILE, SERVING_SIGNATURE
from ctdenoise.storage import files
from ctdenoise.storage.publish import staged


class PushError(RuntimeError):
    """The model could not be published; nothing that looks like a version was left."""


class Executor(tfx_pusher.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        model_path = self.GetModelPath(input_dict)
        base = _base_directory(exec_properties)
        version = _new_version(base)
        destination = files.join(base, version)
        with staged(destination, commit_last=MODEL_METADATA_FILE) as staging:
            files.copy_tree(model_path, staging, last=MODEL_METADATA_FILE)
            _check_serves(staging)
        files.copy_tree(model_path, pushed.uri)
        self._MarkPushed(pushed, pushed_destination=destination, pushed_version=version)


def _base_directory(exec_properties) -> str:
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
    if destination.WhichOneof("destination") != "filesystem":
        raise PushError("only filesystem push destinations are supported")
    return destination.filesystem.base_directory


def _new_version(base: str) -> str:
    """A Unix-time version name not taken yet (TFX's convention; later is larger)."""
    version = int(time.time())
    while files.exists(files.join(base, str(version))):
        version += 1
    return str(version)


def _check_serves(model_dir: str) -> None:
    """Load the copy and find its signatures: a model that does not load is not published."""
    import tensorflow as tf

    try:
        signatures = tf.saved_model.load(files.tf_path(model_dir)).signatures
    except Exception as exc:
        raise PushError(
            f"the copied model does not load ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
        ) from None
    missing = {SERVING_SIGNATURE, EXAMPLES_SIGNATURE} - set(signatures)
    if missing:
        raise PushError(f"the copied model lacks its {', '.join(sorted(missing))} signature")
