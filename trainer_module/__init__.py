"""The Trainer's module (docs/design.md, "The algorithm: cycle-identity CycleGAN for low-dose CT"):
hyperparameters, the model family (`models/`, one
folder per model behind one interface), losses, image pool, tf.data input, the training loop,
TensorBoard summaries, resume and export, and `run.run_fn`, which the TFX Trainer runs (and
`worker.py`, which runs it as one worker of a multi-worker job outside TFX)."""
