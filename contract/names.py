"""Names that the producer and the consumers of an artifact must agree on (docs/design.md §2)."""
from __future__ import annotations

import posixpath

SERVING_SIGNATURE = "serving_default"
"""The exported generator's HU → HU signature (TF Serving's default; `ctdenoise denoise`)."""
EXAMPLES_SIGNATURE = "from_examples"
"""The exported generator's serialized-examples signature, which the Evaluator runs."""
INPUT_KEY = "hu"
"""Input of the serving signature: [N, H, W, 1] float32 HU."""
OUTPUT_KEY = "denoised_hu"
"""Output of both signatures: denoised HU, the shape of the input."""
MODEL_NAME_VARIABLE = "model_name"
"""A string variable of the exported SavedModel: which model of the family it is."""
RECEPTIVE_RADIUS_VARIABLE = "receptive_radius"
"""An int variable of the exported SavedModel: the pixels of context the generator reads on
each side of an output pixel, which `ctdenoise denoise` tiles large slices by."""

MODEL_METADATA_FILE = "ctdenoise_model.json"
"""Beside saved_model.pb: the hyperparameters and training outcome of the model, so that a
pushed model still says how it was made; the Trainer records the same on its Model artifact."""
INGEST_REPORT_FILE = "ingest_report.json"
"""At the root of an Examples artifact: counts and every rejected file with its reason."""
TENSORBOARD_DIR = "tensorboard"
"""Inside the Trainer's Model Run artifact."""

_SPLIT_PREFIX = "Split-"


def split_dir(uri: str, split: str) -> str:
    """The standard TFX folder of one split inside a split artifact (Examples, statistics,
    anomalies). Artifact URIs may be buckets, so this is POSIX path arithmetic."""
    return posixpath.join(uri, f"{_SPLIT_PREFIX}{split}")
