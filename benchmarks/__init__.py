"""Benchmarks of ctdenoise (issue 6): one module per benchmark, `run_all` runs them all,
`render` writes BENCHMARKS.md from their JSON results.

TensorFlow reads these variables when it is first imported, so they are set here: every
`python -m benchmarks.<name>` imports this package before anything else.
"""
import logging
import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the trainer's models are tf_keras (Keras 2)
for _category in (FutureWarning, DeprecationWarning, UserWarning):
    warnings.filterwarnings("ignore", category=_category)
logging.getLogger("apache_beam").setLevel(logging.ERROR)
