"""Processes that tests/test_distributed.py starts, because a distribution strategy has to be
set up before TensorFlow starts in a process (and a multi-worker job needs one process per
worker):

    python -m tests.distributed_helpers worker OUT.npz WORKER_ARGS...   (TF_CONFIG from the environment)
    python -m tests.distributed_helpers start OUT.json STEP                 (TF_CONFIG from the environment)
    python -m tests.distributed_helpers mirrored OUT.json EXAMPLES_DIR WORK_DIR

`worker` runs the product's `ctdenoise.trainer_module.worker` (run_fn with fn_args as TFX builds them)
and dumps what the test compares across workers, and in OUT.npz.temporary.json the files
under its TMPDIR as it last reported a training step; `start` runs the loop's check that all
workers start at the same step, first at step 0, then at STEP; `mirrored` trains with the
product's CycleGAN and fit under MirroredStrategy over two logical CPUs and reports as JSON.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import ctdenoise.tensorflow_env  # noqa: F401  (before TensorFlow)


def worker(out_npz: str, argv: list[str]) -> None:
    """Train as one worker, then save the step, the image pools' fill counts (the first local
    replica's) and G's weights as every worker reads them."""
    import numpy as np

    from ctdenoise.trainer_module import worker as worker_main
    from tests.at_line import on_line

    on_line("[train] step ", lambda: _list_temporary_files(out_npz + ".temporary.json"))
    gan = worker_main.main(argv)
    # Every worker must read: G's BatchNorm statistics are averaged across workers on read.
    weights = gan.G.get_weights()
    trainable = [v.numpy() for v in gan.G.trainable_variables]
    np.savez(
        out_npz,
        step=gan.completed_steps,
        pool_a_count=int(gan.pool_A.count.numpy()),
        pool_b_count=int(gan.pool_B.count.numpy()),
        **{f"weight_{i}": w for i, w in enumerate(weights)},
        **{f"trainable_{i}": w for i, w in enumerate(trainable)},
    )


def _list_temporary_files(out_json: str) -> None:
    """Write the paths of the files under TMPDIR, relative to it, as a JSON list. A worker
    other than the chief deletes its temporary folder when training ends, so what it wrote
    there can only be seen from inside it, while it trains."""
    import tempfile

    root = tempfile.gettempdir()
    paths = sorted(
        os.path.relpath(os.path.join(here, name), root) for here, _, names in os.walk(root) for name in names
    )
    with open(out_json, "w") as f:
        json.dump(paths, f)


def start(out_json: str, step: str) -> None:
    """The multi-worker start check as `fit` runs it, once with every worker at step 0 and
    once at this worker's STEP; what it said each time."""
    import tensorflow as tf

    from ctdenoise.trainer_module import loop
    from ctdenoise.trainer_module.models import preset
    from ctdenoise.trainer_module.models.cycle_identity.model import CycleIdentityGAN
    from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams
    from ctdenoise.trainer_module.strategy import make_strategy

    strategy = make_strategy()
    gan = CycleIdentityGAN(preset("tiny", CycleIdentityParams), strategy)
    said = []
    for at in (0, int(step)):
        gan.step.assign(at)
        try:
            loop._check_workers_start_together(gan)
            said.append("")
        except RuntimeError as exc:
            said.append(str(exc))
    with open(out_json, "w") as f:
        json.dump({"multi_worker": isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), "said": said}, f)


def mirrored(out_json: str, examples: str, work_dir: str) -> None:
    """A few `tiny` steps on two logical CPU devices, with summaries, checkpoints and a restore."""
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    from ctdenoise.contract.names import split_dir
    from ctdenoise.trainer_module.data import paired_eval_slices
    from ctdenoise.trainer_module.loop import fit
    from ctdenoise.trainer_module.models import preset, with_overrides
    from ctdenoise.trainer_module.models.cycle_identity.model import CycleIdentityGAN
    from ctdenoise.trainer_module.models.cycle_identity.params import CycleIdentityParams
    from ctdenoise.trainer_module.run import training_batches

    hp = with_overrides(
        preset("tiny", CycleIdentityParams),
        ["steps_per_epoch=6", "pool_size=50", "checkpoint_every=3", "summary_every=3", "log_every=3"],
    )
    try:
        CycleIdentityGAN(with_overrides(hp, ["batch=3"]), strategy)
        refused = ""
    except ValueError as exc:
        refused = str(exc)
    gan = CycleIdentityGAN(hp, strategy)
    train = [split_dir(examples, "train") + "/*.gz"]
    eval_pairs = paired_eval_slices([split_dir(examples, "eval") + "/*.gz"], 2)
    checkpoints = os.path.join(work_dir, "checkpoints")
    result = fit(
        gan,
        training_batches(train, hp),
        checkpoints,
        os.path.join(work_dir, "logs"),
        eval_pairs,
        progress=lambda line: print(line, flush=True),
    )

    def local(pool) -> dict:
        counts = [int(v.numpy()) for v in strategy.experimental_local_results(pool.count)]
        images = [v.numpy() for v in strategy.experimental_local_results(pool.images)]
        return {"counts": counts, "images": images}

    pools = {"A": local(gan.pool_A), "B": local(gan.pool_B)}
    restored = CycleIdentityGAN(hp, strategy)
    restored.checkpoint().restore(tf.train.latest_checkpoint(checkpoints)).assert_consumed()
    after_restore = {"A": local(restored.pool_A), "B": local(restored.pool_B)}
    report = {
        "replicas": strategy.num_replicas_in_sync,
        "refused": refused,
        "steps": result["steps"],
        "completed_steps": gan.completed_steps,
        "losses": result["losses"],
        "psnr": result.get("psnr", {}),
        "pool_counts": {name: pool["counts"] for name, pool in pools.items()},
        "pools_differ_between_replicas": {name: not np.array_equal(*pool["images"]) for name, pool in pools.items()},
        "restored_step": restored.completed_steps,
        "restored_pool_counts": {name: pool["counts"] for name, pool in after_restore.items()},
        "restored_pools_are_the_first_replicas": {
            name: all(np.array_equal(image, pools[name]["images"][0]) for image in pool["images"])
            for name, pool in after_restore.items()
        },
    }
    with open(out_json, "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    command, out, *rest = sys.argv[1:]
    {"worker": lambda: worker(out, rest), "start": lambda: start(out, *rest), "mirrored": lambda: mirrored(out, *rest)}[
        command
    ]()
