"""Pusher: the standard Pusher with an executor that publishes each version atomically."""

from __future__ import annotations

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from ctdenoise.components.pusher import executor


class Pusher(tfx.components.Pusher):
    """Copies a blessed model to a new numbered version under the push destination's base
    directory, only ever showing complete, loadable versions there."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
