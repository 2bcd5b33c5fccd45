"""Names that the producer and the consumers of an artifact must agree on (docs/design.md, "Data contract")."""

from __future__ import annotations

import functools
import posixpath
from importlib import metadata

PRODUCT = "ctdenoise"
"""The distribution's name, as derived DICOM series and `ctdenoise --version` name it."""
RESEARCH_LABEL = "not for diagnostic use"
"""What a derived series' SeriesDescription and ImageComments say unless the user turns it off."""


@functools.cache
def product_version() -> str:
    """The installed version of the distribution (pyproject's), or "unknown" when the code
    runs from a tree that was never installed."""
    try:
        return metadata.version(PRODUCT)
    except metadata.PackageNotFoundError:
        return "unknown"


SERVING_SIGNATURE = "serving_default"
"""The exported generator's HU → HU signature (TF Serving's default; `ctdenoise denoise`)."""
EXAMPLES_SIGNATURE = "from_examples"
"""The exported generator's serialized-examples signature, which the Evaluator runs."""
INPUT_KEY = "hu"
"""Input of the serving signature: [N, H, W, 1] float32 HU."""
LEVEL_KEY = "noise_hu"
"""Input of the serving signature: [N] float32, each slice's noise level in HU (`contract.noise_level`)."""
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
