"""One worker of a multi-worker training job outside the pipeline, e.g. a Kubeflow TFJob
(docs/kubeflow.md): the Trainer's own `run_fn` on an Examples artifact that ingestion wrote,
with the cluster taken from TF_CONFIG. Every worker runs the same command; only the chief's
checkpoints, TensorBoard logs and model are kept (docs/design.md, "Training mechanics"). Nothing is recorded
in ML Metadata: this trains on more machines than one Trainer pod, it is not a pipeline step.

    python -m ctdenoise.trainer_module.worker --examples URI --model-run-dir URI --serving-model-dir URI \\
        [--preset paper] [--set KEY=VALUE]... [--eval-slices N] [--base-model SAVED_MODEL_DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

from ctdenoise import tensorflow_env  # noqa: F401 (before tf.keras is first touched)
from ctdenoise.trainer_module import hparams as hparams_lib
from ctdenoise.trainer_module.models import configure, set_training_threads
from ctdenoise.trainer_module.models.base import DenoisingModel
from ctdenoise.trainer_module.run import fn_args, run_fn


def main(argv: list[str] | None = None) -> DenoisingModel:
    parser = argparse.ArgumentParser(
        prog="python -m ctdenoise.trainer_module.worker", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--examples", required=True, help="Examples artifact URI (holds Split-train/, Split-eval/)")
    parser.add_argument(
        "--model-run-dir", required=True, help="checkpoints and TensorBoard logs (one folder all workers reach)"
    )
    parser.add_argument("--serving-model-dir", required=True, help="where the chief exports the SavedModel")
    parser.add_argument("--preset", default="paper", choices=hparams_lib.PRESETS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyperparameter override")
    parser.add_argument(
        "--eval-slices", type=int, default=hparams_lib.TENSORBOARD_EVAL_SLICES, help="eval slices shown in TensorBoard"
    )
    parser.add_argument(
        "--base-model", help="SavedModel folder whose generator every worker starts from (a warm start)"
    )
    args = parser.parse_args(argv)
    hp = configure(args.preset, args.set)
    set_training_threads(hp)
    return run_fn(
        fn_args(args.examples, args.model_run_dir, args.serving_model_dir, hp, args.eval_slices, args.base_model)
    )


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:  # bad hyperparameters or batch: one line, as the ctdenoise command
        if os.environ.get("CTDENOISE_DEBUG"):
            raise
        sys.exit(f"ctdenoise.trainer_module.worker: error: {exc}")
