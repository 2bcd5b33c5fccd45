"""Bit-identical training runs for one seed on one machine (docs/design.md, "Bit-identical runs").

Seeds fix the initial weights, the patch streams and the image pools, yet two cpu-demo runs
with one seed still drifted apart from about step 2. The cause is Grappler's memory
optimizer: it rewrites an AddN of more than two inputs that is live at the graph's estimated
memory peak into a temporary variable plus one AssignAdd per input. The AssignAdds run in
the order their inputs arrive, which the inter-op scheduler decides, so the float sum changes
from run to run. In the CycleGAN step it hits the gradients with respect to the fake images,
hence every generator gradient. `tf.config.experimental.enable_op_determinism` and a single
thread do not change this, and the public `tf.config.optimizer` options have no key for this
optimizer; so the setting goes into the per-call function options of the train step only.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context as eager_context


def without_memory_optimizer(function: Callable) -> Callable:
    """`function` (a tf.function), called with Grappler's memory optimizer off."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        ctx = eager_context.context()
        previous = ctx.function_call_options
        config = config_pb2.ConfigProto.FromString(previous.config_proto_serialized)
        config.graph_options.rewrite_options.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
        ctx.function_call_options = eager_context.FunctionCallOptions(previous.executor_type, config)
        try:
            return function(*args, **kwargs)
        finally:
            ctx.function_call_options = previous

    return call
