"""One worker of a multi-worker training job outside the pipeline, e.g. a Kubeflow TFJob
(docs/kubeflow.md): the Trainer's own `run_fn` on an Examples artifact that ingestion wrote,
with the cluster taken from TF_CONFIG. Every worker runs the same command; only the chief's
checkpoints, TensorBoard logs and model are kept (docs/design.md §1.10). Nothing is recorded
in ML Metadata: this trains on more machines than one Trainer pod, it is not a pipeline step.

    python -m trainer_module.worker --examples URI --model-run-dir URI --serving-model-dir URI \\
        [--preset paper] [--set KEY=VALUE]... [--eval-slices N]
"""
from __future__ import annotations

import argparse
import os
import sys
from types import SimpleNamespace

import contract.keras2  # noqa: F401  (before tf.keras is first touched)
from contract.names import split_dir
from trainer_module import hparams as hparams_lib
from trainer_module.gan import CycleGAN
from trainer_module.hparams import HParams
from trainer_module.run import HPARAMS_KEY, run_fn


EVAL_SLICES = 3
"""Whole eval slices shown in TensorBoard, as the pipeline's Trainer (pipeline/configs.py)."""


def fn_args(examples: str, model_run_dir: str, serving_model_dir: str, hp: HParams,
            eval_slices: int = EVAL_SLICES) -> SimpleNamespace:
    """The arguments TFX's Trainer would give `run_fn` for this Examples artifact."""
    return SimpleNamespace(
        train_files=[split_dir(examples, "train") + "/*.gz"], eval_files=[split_dir(examples, "eval") + "/*.gz"],
        model_run_dir=model_run_dir, serving_model_dir=serving_model_dir,
        train_steps=hp.total_steps, eval_steps=eval_slices,
        custom_config={HPARAMS_KEY: hparams_lib.to_dict(hp)})


def main(argv: list[str] | None = None) -> CycleGAN:
    parser = argparse.ArgumentParser(prog="python -m trainer_module.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", required=True, help="Examples artifact URI (holds Split-train/, Split-eval/)")
    parser.add_argument("--model-run-dir", required=True,
                        help="checkpoints and TensorBoard logs (one folder all workers reach)")
    parser.add_argument("--serving-model-dir", required=True, help="where the chief exports the SavedModel")
    parser.add_argument("--preset", default="paper", choices=hparams_lib.PRESETS)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyperparameter override")
    parser.add_argument("--eval-slices", type=int, default=EVAL_SLICES, help="eval slices shown in TensorBoard")
    args = parser.parse_args(argv)
    hp = hparams_lib.resolve(args.preset, args.set)
    return run_fn(fn_args(args.examples, args.model_run_dir, args.serving_model_dir, hp, args.eval_slices))


if __name__ == "__main__":
    try:
        main()
    except ValueError as exc:  # bad hyperparameters or batch: one line, as the ctdenoise command
        if os.environ.get("CTDENOISE_DEBUG"):
            raise
        sys.exit(f"trainer_module.worker: error: {exc}")
