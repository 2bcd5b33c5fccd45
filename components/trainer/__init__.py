"""The Trainer component: TFX's Trainer running `trainer_module.run.run_fn`, recording the outcome."""
