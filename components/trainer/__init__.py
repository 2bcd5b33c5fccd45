"""The Trainer component: TFX's Trainer running `ctdenoise.trainer_module.run.run_fn`, recording the outcome."""
