"""Custom TFMA metrics for the image-to-image denoiser (standard TFX Evaluator, TFMA 0.47).

The Evaluator runs the model's `from_examples` signature (`ModelSpec(signature_name=
"from_examples", prediction_key="denoised_hu")`), so each extract holds
* ``predictions``: the denoised LDCT in HU, one [H, W, 1] float32 array per example (a dict
  keyed by model name when a baseline model is evaluated too), and
* ``features``: the raw example features decoded by TFXIO, each a 1-element array, e.g.
  ``features["ndct"] == np.array([b"<int16 LE bytes>"], dtype=object)``.

Each metric has its own `Preprocessor` that decodes ndct/ldct, reduces the example to a
(sum, count) contribution per model BEFORE slicing fans examples out, and a combiner that adds
them up. Examples without an NDCT image (unpaired slices) contribute nothing.

`reference` selects what is compared with the NDCT: ``"denoised"`` (the model's prediction)
or ``"ldct"`` (the LDCT as it is, no denoising; identical for every model). `PSNRGain`,
`SSIMGain` and `BodySSIMGain` are denoised minus LDCT, averaged per slice, and
`BodyRMSEReduction` is 1 − (denoised's in-body RMSE / the LDCT's), so a value threshold
with ``lower_bound=margin`` expresses "the candidate beats the LDCT by margin" (TFMA value
thresholds only compare a metric against constants).

Aggregation over the slices of a TFMA slice: PSNR, SSIM and the gains are the mean of the
per-slice values; RMSE is pooled: sqrt(Σ squared HU error / Σ pixels), and so is the
in-body RMSE in the reduction.

Use in an EvalConfig as ``MetricConfig(class_name="PSNR", module=
"components.evaluation.tfma_metrics", config='{"reference": "ldct", "name": "ldct_psnr"}')``.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from components.evaluation import image_metrics
from contract import features as feature_contract
from contract.names import OUTPUT_KEY

MODULE = __name__
REFERENCES = ("denoised", "ldct")
_LDCT, _NDCT = feature_contract.DOSES

# stat name → per-example (sum, count) contribution for one image (HU) against the NDCT (HU).
_Contribution = Tuple[float, float]


def _psnr(image_hu: np.ndarray, ndct_hu: np.ndarray) -> _Contribution:
    return image_metrics.psnr_hu(image_hu, ndct_hu), 1.0


def _ssim(image_hu: np.ndarray, ndct_hu: np.ndarray) -> _Contribution:
    return image_metrics.ssim_hu(image_hu, ndct_hu), 1.0


def _sse(image_hu: np.ndarray, ndct_hu: np.ndarray) -> _Contribution:
    sse, n = image_metrics.squared_error_hu(image_hu, ndct_hu)
    return sse, float(n)


def _body_sse(image_hu: np.ndarray, ndct_hu: np.ndarray) -> _Contribution:
    sse, n = image_metrics.squared_error_hu(image_hu, ndct_hu, image_metrics.body_mask(ndct_hu))
    return sse, float(n)


def _body_ssim(image_hu: np.ndarray, ndct_hu: np.ndarray) -> _Contribution:
    return image_metrics.body_ssim_hu(image_hu, ndct_hu), 1.0


_STATS = {"psnr": _psnr, "ssim": _ssim, "rmse_hu": _sse, "body_rmse_hu": _body_sse, "body_ssim": _body_ssim}
_POOLED_RMSE = ("rmse_hu", "body_rmse_hu")
_OUTPUTS = {"mean": lambda s, c: s / c, "root": lambda s, c: float(np.sqrt(s / c)),
            "reduction": lambda s, c: 1.0 - float(np.sqrt(s / c))}
"""How a combiner turns its (sum, count) into the metric: a mean, a pooled RMSE, or for a
reduction (sum = the model's squared error, count = the LDCT's) one minus their RMSE ratio."""


def _first(value: Any) -> Any:
    """A TFXIO feature value (1-element array / list / scalar) → its single element, or None."""
    if value is None:
        return None
    if isinstance(value, (np.ndarray, list, tuple)):
        flat = np.asarray(value, dtype=object).ravel()
        return flat[0] if flat.size else None
    return value


def decode_feature_image(features: Dict[str, Any], dose: str) -> Optional[np.ndarray]:
    """The [H, W] HU image of `dose` from raw TFMA features, or None if the example lacks it."""
    data = _first(features.get(feature_contract.image_key(dose)))
    if data is None or len(data) == 0:
        return None
    height = int(_first(features[feature_contract.HEIGHT]))
    width = int(_first(features[feature_contract.WIDTH]))
    return feature_contract.decode_hu(data, height, width).astype(np.float32)


def _prediction(extracts: Dict[str, Any], model_name: str, shape: Tuple[int, int]) -> np.ndarray:
    """The model's denoised LDCT for this example, cropped to the example's `shape` (the
    `from_examples` signature pads each batch to its largest slice)."""
    image = _padded_prediction(extracts, model_name)
    return image[:shape[0], :shape[1]]


def _padded_prediction(extracts: Dict[str, Any], model_name: str) -> np.ndarray:
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
    """extracts → {model_name: (sum, count)} for one stat (empty dict for unpaired examples)."""

    def __init__(self, stat: str, reference: str, gain: str, model_names: List[str]):
        ref = gain or reference
        super().__init__(name=f"ctdenoise_{stat}_{ref}_{'|'.join(model_names)}")
        self._stat, self._reference, self._gain = stat, reference, gain
        self._model_names = list(model_names)

    def process(self, extracts: Dict[str, Any]) -> Iterator[Dict[str, _Contribution]]:
        features = extracts.get(tfma.FEATURES_KEY) or {}
        ndct = decode_feature_image(features, _NDCT)
        ldct = decode_feature_image(features, _LDCT)
        if ndct is None or ldct is None:
            yield {}
            return
        fn = _STATS[self._stat]
        if self._gain:
            ldct_value, _ = fn(ldct, ndct)
            out = {}
            for name in self._model_names:
                value, _ = fn(_prediction(extracts, name, ndct.shape), ndct)
                out[name] = (value - ldct_value, 1.0) if self._gain == "difference" else (value, ldct_value)
            yield out
        elif self._reference == "ldct":
            contribution = fn(ldct, ndct)
            yield {name: contribution for name in self._model_names}
        else:
            yield {name: fn(_prediction(extracts, name, ndct.shape), ndct) for name in self._model_names}


class _SumCountCombiner(beam.CombineFn):
    """Adds the per-example (sum, count) contributions per model; outputs the metric per key."""

    def __init__(self, keys: Dict[str, metric_types.MetricKey], output: str):
        self._keys = keys  # model name → MetricKey
        self._output = output  # a key of _OUTPUTS

    def create_accumulator(self) -> Dict[str, List[float]]:
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
        out = {}
        for name, key in self._keys.items():
            s, c = acc[name]
            out[key] = float(_OUTPUTS[self._output](s, c)) if c else float("nan")
        return out


def _computations(
    stat: str,
    reference: str = "denoised",
    gain: str = "",
    name: str = "",
    model_names: Optional[Iterable[str]] = None,
    output_names: Optional[Iterable[str]] = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}, got {reference!r}")
    model_names = list(model_names or [""])
    keys = {}
    for model_name in model_names:
        for output_name in output_names or [""]:
            keys[model_name] = metric_types.MetricKey(
                name=name, model_name=model_name, output_name=output_name,
                example_weighted=example_weighted,
            )
    return [
        metric_types.MetricComputation(
            keys=list(keys.values()),
            preprocessors=[_ImagePreprocessor(stat, reference, gain, model_names)],
            combiner=_SumCountCombiner(keys, _output(stat, gain)),
        )
    ]


def _output(stat: str, gain: str) -> str:
    if gain == "reduction":
        return "reduction"
    return "root" if stat in _POOLED_RMSE and not gain else "mean"


class _ImageMetric(tfma.metrics.Metric):
    """One image statistic (`stat`, a key of _STATS) of `reference` vs NDCT; with `gain`
    "difference" the per-slice difference denoised − LDCT, with "reduction" one minus the
    ratio of the pooled statistics (denoised over LDCT)."""

    stat = ""
    gain = ""

    def __init__(self, name: str = "", reference: str = "denoised"):
        super().__init__(_computations, name=name, stat=self.stat, reference=reference, gain=self.gain)

    def _default_name(self) -> str:
        if self.gain == "reduction":
            return f"{self.stat.removesuffix('_hu')}_reduction"
        return f"{self.stat}_gain" if self.gain else self.stat

    def get_config(self) -> Dict[str, Any]:
        """Only the constructor's arguments: TFMA rebuilds a metric as cls(**config)."""
        return {"name": self.name, "reference": self.kwargs["reference"]}


class PSNR(_ImageMetric):
    """Mean per-slice PSNR (dB, normalised images, data range 2) of `reference` vs NDCT."""

    stat = "psnr"


class SSIM(_ImageMetric):
    """Mean per-slice SSIM (normalised images, data range 2) of `reference` vs NDCT."""

    stat = "ssim"


class RMSEHU(_ImageMetric):
    """Pooled RMSE in HU over whole slices of `reference` vs NDCT."""

    stat = "rmse_hu"


class BodyRMSEHU(_ImageMetric):
    """Pooled RMSE in HU inside the body mask (NDCT HU > -500) of `reference` vs NDCT."""

    stat = "body_rmse_hu"


class BodySSIM(_ImageMetric):
    """Mean per-slice SSIM inside the body mask (NDCT HU > -500) of `reference` vs NDCT."""

    stat = "body_ssim"


class PSNRGain(_ImageMetric):
    """Mean per-slice PSNR(denoised, NDCT) − PSNR(LDCT, NDCT) in dB."""

    stat, gain = "psnr", "difference"


class SSIMGain(_ImageMetric):
    """Mean per-slice SSIM(denoised, NDCT) − SSIM(LDCT, NDCT)."""

    stat, gain = "ssim", "difference"


class BodySSIMGain(_ImageMetric):
    """Mean per-slice body SSIM(denoised, NDCT) − body SSIM(LDCT, NDCT)."""

    stat, gain = "body_ssim", "difference"


class BodyRMSEReduction(_ImageMetric):
    """1 − pooled in-body RMSE(denoised, NDCT) / pooled in-body RMSE(LDCT, NDCT): 0.2 means
    the body's error is a fifth lower than the LDCT's, below 0 that it got worse."""

    stat, gain = "body_rmse_hu", "reduction"


METRIC_CLASSES = (PSNR, SSIM, RMSEHU, BodyRMSEHU, BodySSIM, PSNRGain, SSIMGain, BodySSIMGain, BodyRMSEReduction)
for _cls in METRIC_CLASSES:
    metric_types.register_metric(_cls)


def metric_config(cls: type, threshold: Optional[tfma.MetricThreshold] = None, **config: Any
                  ) -> tfma.MetricConfig:
    """A `tfma.MetricConfig` naming `cls` of this module, with its kwargs (and name) as JSON config.

    `threshold` applies to every slice; see `eval_config` for overall-only thresholds.
    """
    config.setdefault("name", cls().name)
    result = tfma.MetricConfig(
        class_name=cls.__name__, module=MODULE, config=json.dumps(config, sort_keys=True))
    if threshold is not None:
        result.threshold.CopyFrom(threshold)
    return result
