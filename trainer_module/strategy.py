"""Where and in which precision the GAN trains: the distribution strategy, this process's
place among the workers, and the dtype policy."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import tensorflow as tf
import tf_keras as keras

from ctdenoise.trainer_module.hparams import HParams

TRAINING_JOBS = ("chief", "worker")
"""The TF_CONFIG task types that train (an "evaluator" or "ps" task does not)."""


def make_strategy() -> tf.distribute.Strategy:
    """Multi-worker when TF_CONFIG names several workers, one machine's GPUs when there
    are several, else the default (single-device) strategy.

    Call it before anything else touches TensorFlow's runtime: a multi-worker strategy
    configures collective ops, which TensorFlow accepts only before it starts."""
    if _training_tasks(_tf_config().get("cluster", {})) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


@dataclass(frozen=True)
class Worker:
    """This process's task in TF_CONFIG, and whether it is the chief: the one worker whose
    checkpoints, TensorBoard logs and exported model are kept."""

    task_type: str
    task_id: int
    is_chief: bool

    @property
    def name(self) -> str:
        return f"{self.task_type}-{self.task_id}"


def this_worker() -> Worker:
    """The chief is the task of type "chief", or worker 0 when the cluster has none; a process
    without TF_CONFIG (or without a task in it) trains alone and is its own chief."""
    config = _tf_config()
    cluster, task = config.get("cluster", {}), config.get("task", {})
    task_type, task_id = task.get("type", "chief"), int(task.get("index", 0))
    chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not cluster.get("chief"))
    return Worker(task_type, task_id, chief)


def worker_count(strategy: tf.distribute.Strategy) -> int:
    """Processes taking part in `strategy`'s collectives (1 unless multi-worker)."""
    resolver = strategy.cluster_resolver
    return max(1, _training_tasks(resolver.cluster_spec().as_dict())) if resolver is not None else 1


def _tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def _training_tasks(cluster: dict) -> int:
    return sum(len(cluster.get(job, [])) for job in TRAINING_JOBS)


def uses_mixed_precision(hp: HParams) -> bool:
    """float16 compute pays off on GPUs only; on a CPU it is slower, so 'auto' keeps float32."""
    if hp.mixed_precision == "auto":
        return bool(tf.config.list_physical_devices("GPU"))
    return hp.mixed_precision == "on"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras layers take the global policy when built; restore it afterwards so that
    building this GAN does not change models built elsewhere in the process."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
