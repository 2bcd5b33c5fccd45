"""The one table of image metrics (docs/design.md, "Pipeline metrics and the blessing gate").

Each metric is named once, in `METRICS`, with how one slice contributes to it, how slices
pool into one figure, its column in the run summary and, where the blessing gate judges it,
how the candidate must compare with the LDCT as it is. The TFMA metrics and the gate
(`eval_config`), what `results` reads back, the summary's columns (`ctdenoise.metadata.summary`) and the
benchmarks' scores (`benchmarks.quality_scores`) are all derived from it, so a metric added
here reaches every one of them, and the Evaluator and the benchmarks share one definition.

NumPy only: the command line and the benchmarks read it without importing TFMA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ctdenoise.components.evaluation import image_metrics as im
from ctdenoise.components.evaluation.thresholds import BlessingThresholds

Contribution = tuple[float, float]
"""One slice's (sum, count) towards a metric."""
LDCT_PREFIX = "ldct_"
"""Prefix of a metric computed on the LDCT as it is (no denoising), beside the model's."""
DIFFERENCE, REDUCTION = "difference", "reduction"
"""How the gate compares a candidate with the LDCT: the per-slice mean of candidate − LDCT,
or one minus the ratio of the pooled figures (candidate over LDCT)."""


@dataclass(frozen=True)
class Gate:
    """The blessing criterion on one metric: its comparison with the LDCT must reach a lower
    bound read from `BlessingThresholds`."""

    comparison: str
    """DIFFERENCE or REDUCTION."""
    threshold: str
    """The `BlessingThresholds` field that sets the bound."""
    tolerance: bool
    """True: the field says how far the comparison may fall below 0 (bound −field); False:
    the field is the margin it must reach."""

    def lower_bound(self, thresholds: BlessingThresholds) -> float:
        value = getattr(thresholds, self.threshold)
        return -abs(value) if self.tolerance else value


@dataclass(frozen=True)
class Metric:
    """One image metric of an image against a reference, both HU."""

    name: str
    title: str
    """Column title in the run summary."""
    decimals: int
    contribution: Callable[[np.ndarray, np.ndarray], Contribution]
    """(image HU, reference HU) → this slice's (sum, count)."""
    root: bool
    """The figure over many slices is sqrt(Σ sum / Σ count), an RMSE pooled over every pixel,
    rather than Σ sum / Σ count (the mean of per-slice values when each slice counts 1)."""
    gate: Gate | None = None
    change: str | None = None
    """The `BlessingThresholds` field bounding how far below the baseline model the
    candidate may fall, where the gate compares them on this metric."""

    @property
    def judged(self) -> Gate:
        """The gate of a metric the gate judges; asking it of another metric is a programming error."""
        if self.gate is None:
            raise ValueError(f"the gate does not judge {self.name}")
        return self.gate

    @property
    def gain_name(self) -> str:
        """The name of the candidate's comparison with the LDCT (a metric the gate judges)."""
        if self.judged.comparison == REDUCTION:
            return f"{self.name.removesuffix('_hu')}_reduction"
        return f"{self.name}_gain"

    def finish(self, total: float, count: float) -> float:
        """The figure from the summed contributions; NaN where no slice contributed."""
        if not count:
            return float("nan")
        return float(np.sqrt(total / count)) if self.root else float(total / count)


def _psnr(image: np.ndarray, reference: np.ndarray) -> Contribution:
    return im.psnr_hu(image, reference), 1.0


def _ssim(image: np.ndarray, reference: np.ndarray) -> Contribution:
    return im.ssim_hu(image, reference), 1.0


def _sse(image: np.ndarray, reference: np.ndarray) -> Contribution:
    total, n = im.squared_error_hu(image, reference)
    return total, float(n)


def _body_sse(image: np.ndarray, reference: np.ndarray) -> Contribution:
    total, n = im.squared_error_hu(image, reference, im.body_mask(reference))
    return total, float(n)


def _body_ssim(image: np.ndarray, reference: np.ndarray) -> Contribution:
    return im.body_ssim_hu(image, reference), 1.0


METRICS = (
    Metric(
        "psnr",
        "PSNR dB",
        2,
        _psnr,
        root=False,
        gate=Gate(DIFFERENCE, "psnr_margin_db", tolerance=False),
        change="max_psnr_drop_db",
    ),
    Metric(
        "ssim",
        "SSIM",
        4,
        _ssim,
        root=False,
        gate=Gate(DIFFERENCE, "ssim_tolerance", tolerance=True),
        change="max_ssim_drop",
    ),
    Metric("rmse_hu", "RMSE HU", 1, _sse, root=True),
    Metric(
        "body_rmse_hu",
        "body RMSE HU",
        1,
        _body_sse,
        root=True,
        gate=Gate(REDUCTION, "body_rmse_margin", tolerance=False),
    ),
    Metric(
        "body_ssim",
        "body SSIM",
        4,
        _body_ssim,
        root=False,
        gate=Gate(DIFFERENCE, "body_ssim_tolerance", tolerance=True),
    ),
)
"""PSNR and SSIM on [-1, 1] images (data range 2); RMSE in HU over the whole slice and inside
the reference's body (HU above `ctdenoise.contract.hu.BODY_HU`); SSIM over the windows centred in that
body (`image_metrics`)."""
BY_NAME = {metric.name: metric for metric in METRICS}
GATED = tuple(metric for metric in METRICS if metric.gate is not None)


def metric(name: str) -> Metric:
    """The table's entry `name`; one line naming the known ones otherwise."""
    if name not in BY_NAME:
        raise ValueError(f"no image metric {name!r}; the table has {', '.join(BY_NAME)}")
    return BY_NAME[name]


def score(entry: Metric, images: Iterable[np.ndarray], references: Iterable[np.ndarray]) -> float:
    """`entry` of a stack of slices against their references, pooled as the Evaluator pools it."""
    parts = [entry.contribution(image, reference) for image, reference in zip(images, references, strict=True)]
    return entry.finish(sum(p[0] for p in parts), sum(p[1] for p in parts))


def comparison(
    entry: Metric, candidate: Iterable[np.ndarray], ldct: Iterable[np.ndarray], references: Iterable[np.ndarray]
) -> float:
    """The gate's comparison of `candidate` with `ldct` on `entry` (which must be gated)."""
    candidate, ldct, references = list(candidate), list(ldct), list(references)
    if entry.judged.comparison == REDUCTION:
        return 1.0 - score(entry, candidate, references) / score(entry, ldct, references)
    return float(
        np.mean(
            [
                entry.contribution(c, r)[0] - entry.contribution(low, r)[0]
                for c, low, r in zip(candidate, ldct, references, strict=True)
            ]
        )
    )


def gate(
    candidate: np.ndarray, ldct: np.ndarray, ndct: np.ndarray, thresholds: BlessingThresholds = BlessingThresholds()
) -> dict[str, float | bool]:
    """The gate's value criteria on a stack of slices, as the Evaluator applies them to its
    overall slice: each comparison by name, and whether all reach their bounds."""
    values = {entry.gain_name: comparison(entry, candidate, ldct, ndct) for entry in GATED}
    blessed = all(values[entry.gain_name] >= entry.judged.lower_bound(thresholds) for entry in GATED)
    return {**values, "blessed": bool(blessed)}
