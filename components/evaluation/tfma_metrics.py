"""Custom TFMA metrics for the image-to-image denoiser (standard TFX Evaluator, TFMA 0.47).

The Evaluator runs the model's `from_examples` signature (`ModelSpec(signature_name=
"from_examples", prediction_key="denoised_hu")`), so each extract holds
* ``predictions``: the denoised LDCT in HU, one [H, W, 1] float32 array per example (a dict
  keyed by model name when a baseline model is evaluated too), and
* ``features``: the raw example features decoded by TFXIO, each a 1-element array, e.g.
  ``features["ndct"] == np.array([b"<int16 LE bytes>"], dtype=object)``.

One class, `ImageMetric`, computes every entry of the metric table
(`ctdenoise.components.evaluation.metric_table`): its `Preprocessor` decodes ndct/ldct and reduces the
example to the entry's (sum, count) contribution per model BEFORE slicing fans examples out,
and a combiner adds them up. Examples without an NDCT image (unpaired slices) contribute
nothing.

`reference` selects what is compared with the NDCT: ``"denoised"`` (the model's prediction)
or ``"ldct"`` (the LDCT as it is, no denoising; identical for every model). With
``gain=True`` the metric is the entry's gate comparison instead: denoised minus LDCT averaged
per slice, or 1 − (denoised's pooled figure / the LDCT's), so a value threshold with
``lower_bound=margin`` expresses "the candidate beats the LDCT by margin" (TFMA value
thresholds only compare a metric against constants).

Use in an EvalConfig as `metric_config("psnr", reference="ldct")`, which names it
``ldct_psnr``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from ctdenoise.components.evaluation import metric_table as table
from ctdenoise.contract import features as feature_contract
from ctdenoise.contract.names import OUTPUT_KEY

MODULE = __name__
REFERENCES = ("denoised", "ldct")
_LDCT, _NDCT = feature_contract.DOSES


def _first(value: Any) -> Any:
    """A TFXIO feature value (1-element array / list / scalar) → its single element, or None."""
    if value is None:
        return None
    if isinstance(value, (np.ndarray, list, tuple)):
        flat = np.asarray(value, dtype=object).ravel()
        return flat[0] if flat.size else None
    return value


def decode_feature_image(features: dict[str, Any], dose: str) -> np.ndarray | None:
    """The [H, W] HU image of `dose` from raw TFMA features, or None if the example lacks it."""
    data = _first(features.get(feature_contract.image_key(dose)))
    if data is None or len(data) == 0:
        return None
    height = int(_first(features[feature_contract.HEIGHT]))
    width = int(_first(features[feature_contract.WIDTH]))
    return feature_contract.decode_hu(data, height, width).astype(np.float32)


def _prediction(extracts: dict[str, Any], model_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The model's denoised LDCT for this example, cropped to the example's `shape` (the
    `from_examples` signature pads each batch to its largest slice)."""
    image = _padded_prediction(extracts, model_name)
    return image[: shape[0], : shape[1]]


def _padded_prediction(extracts: dict[str, Any], model_name: str) -> np.ndarray:
    predictions = extracts[tfma.PREDICTIONS_KEY]
    if isinstance(predictions, dict):
        if model_name in predictions:
            predictions = predictions[model_name]
        elif len(predictions) == 1:
            predictions = next(iter(predictions.values()))
        else:
            raise KeyError(f"no predictions for model {model_name!r}: keys {sorted(predictions)}")
    if isinstance(predictions, dict):  # ModelSpec without prediction_key
        predictions = predictions[OUTPUT_KEY]
    return np.asarray(predictions, dtype=np.float32)


class _ImagePreprocessor(metric_types.Preprocessor):
    """extracts → {model_name: (sum, count)} for one table entry (empty dict for unpaired
    examples); with `gain`, the contribution to the entry's gate comparison."""

    def __init__(self, metric: str, reference: str, gain: bool, model_names: list[str]):
        role = "gain" if gain else reference
        super().__init__(name=f"ctdenoise_{metric}_{role}_{'|'.join(model_names)}")
        self._entry, self._reference, self._gain = table.metric(metric), reference, gain
        self._model_names = list(model_names)

    def process(self, extracts: dict[str, Any]) -> Iterator[dict[str, table.Contribution]]:
        features = extracts.get(tfma.FEATURES_KEY) or {}
        ndct = decode_feature_image(features, _NDCT)
        ldct = decode_feature_image(features, _LDCT)
        if ndct is None or ldct is None:
            yield {}
            return
        contribution = self._entry.contribution
        if self._gain:
            ldct_value, _ = contribution(ldct, ndct)
            out = {}
            for name in self._model_names:
                value, _ = contribution(_prediction(extracts, name, ndct.shape), ndct)
                difference = self._entry.judged.comparison == table.DIFFERENCE
                out[name] = (value - ldct_value, 1.0) if difference else (value, ldct_value)
            yield out
        elif self._reference == "ldct":
            yield {name: contribution(ldct, ndct) for name in self._model_names}
        else:
            yield {name: contribution(_prediction(extracts, name, ndct.shape), ndct) for name in self._model_names}


class _SumCountCombiner(beam.CombineFn):
    """Adds the per-example (sum, count) contributions per model; outputs the metric per key
    with `finish(sum, count)`."""

    def __init__(self, keys: dict[str, metric_types.MetricKey], finish: Callable[[float, float], float]):
        self._keys = keys  # model name → MetricKey
        self._finish = finish

    def create_accumulator(self) -> dict[str, list[float]]:
        return {name: [0.0, 0.0] for name in self._keys}

    def add_input(self, acc, element):
        # Custom preprocessors hand the combiner the list of their outputs for one example.
        for item in element if isinstance(element, list) else [element]:
            for name, (s, c) in (item or {}).items():
                if name in acc:
                    acc[name][0] += s
                    acc[name][1] += c
        return acc

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        result = next(accumulators)
        for acc in accumulators:
            for name, (s, c) in acc.items():
                result[name][0] += s
                result[name][1] += c
        return result

    def extract_output(self, acc):
        return {key: self._finish(*acc[name]) for name, key in self._keys.items()}


def _finisher(entry: table.Metric, gain: bool) -> Callable[[float, float], float]:
    """How the summed contributions become the metric: the entry's own pooling, a mean of
    per-slice differences, or for a reduction (sum = the model's pooled sum, count = the
    LDCT's) one minus the ratio of the two pooled figures."""
    if not gain:
        return entry.finish
    if entry.judged.comparison == table.DIFFERENCE:
        return lambda s, c: float(s / c) if c else float("nan")
    return lambda s, c: 1.0 - entry.finish(s, 1.0) / entry.finish(c, 1.0) if c else float("nan")


def _computations(
    metric: str,
    reference: str = "denoised",
    gain: bool = False,
    name: str = "",
    model_names: Iterable[str] | None = None,
    output_names: Iterable[str] | None = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    model_names = list(model_names or [""])
    keys = {}
    for model_name in model_names:
        for output_name in output_names or [""]:
            keys[model_name] = metric_types.MetricKey(
                name=name,
                model_name=model_name,
                output_name=output_name,
                example_weighted=example_weighted,
            )
    return [
        metric_types.MetricComputation(
            keys=list(keys.values()),
            preprocessors=[_ImagePreprocessor(metric, reference, gain, model_names)],
            combiner=_SumCountCombiner(keys, _finisher(table.metric(metric), gain)),
        )
    ]


def metric_name(metric: str, reference: str = "denoised", gain: bool = False) -> str:
    """The TFMA name of a table entry: its own, ``ldct_`` prefixed for the LDCT as it is, or
    its gate comparison's name."""
    entry = table.metric(metric)
    if gain:
        return entry.gain_name
    return table.LDCT_PREFIX + entry.name if reference == "ldct" else entry.name


class ImageMetric(tfma.metrics.Metric):
    """One entry (`metric`) of the metric table, of `reference` vs NDCT, or with `gain` the
    entry's gate comparison of the denoised LDCT with the LDCT as it is."""

    def __init__(self, metric: str = "psnr", reference: str = "denoised", gain: bool = False, name: str = ""):
        if gain and table.metric(metric).gate is None:
            raise ValueError(f"the gate compares nothing on {metric!r}")
        super().__init__(
            _computations,
            name=name or metric_name(metric, reference, gain),
            metric=metric,
            reference=reference,
            gain=gain,
        )

    def get_config(self) -> dict[str, Any]:
        """Only the constructor's arguments: TFMA rebuilds a metric as cls(**config)."""
        return {
            "name": self.name,
            "metric": self.kwargs["metric"],
            "reference": self.kwargs["reference"],
            "gain": self.kwargs["gain"],
        }


metric_types.register_metric(ImageMetric)


def metric_config(metric: str, reference: str = "denoised", gain: bool = False) -> tfma.MetricConfig:
    """A `tfma.MetricConfig` of `ImageMetric` for one table entry, its arguments as JSON config."""
    config = ImageMetric(metric, reference, gain).get_config()
    return tfma.MetricConfig(class_name=ImageMetric.__name__, module=MODULE, config=json.dumps(config, sort_keys=True))
