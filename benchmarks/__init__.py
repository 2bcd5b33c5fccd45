"""Speed, memory and quality benchmarks of ctdenoise: one module per benchmark, `run_all`
runs them all, `render` writes BENCHMARKS.md from their JSON results.

TensorFlow reads these settings when it is first imported, so they are made here: every
`python -m benchmarks.<name>` imports this package before anything else.
"""

import logging
import os
import warnings

import ctdenoise.tensorflow_env  # noqa: F401  (the trainer's models are tf_keras, Keras 2)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
for _category in (FutureWarning, DeprecationWarning, UserWarning):
    warnings.filterwarnings("ignore", category=_category)
logging.getLogger("apache_beam").setLevel(logging.ERROR)
