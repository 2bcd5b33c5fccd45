"""The Trainer's module for the cycle-identity CycleGAN (docs/design.md §1): hyperparameters,
the four models, losses, image pool, tf.data input, the GAN's step and loop, TensorBoard
summaries, resume and export, and `run.run_fn`, which the TFX Trainer runs (and
`worker.py`, which runs it as one worker of a multi-worker job outside TFX)."""
