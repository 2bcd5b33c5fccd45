"""The HU gate's checks: plain functions over TFDV statistics and anomalies, so tests and
the executor share them and every verdict can be explained in one line."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

from ctdenoise.contract.features import DOSES, stat_key
from ctdenoise.storage import files


@dataclass(frozen=True)
class GateThresholds:
    """What "plausible HU" means. Air outside the body reads -1000 HU; the classic rescale
    bug (intercept 0 instead of -1024) moves it to about +24."""

    air_hu: float = -1000.0
    air_tolerance_hu: float = 100.0
    min_tissue_p99_hu: float = 0.0
    max_mean_p99_hu: float = 3000.0
    min_images_per_dose: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GateThresholds:
        return cls(**json.loads(text)) if text else cls()


def feature_stats(
    stats: statistics_pb2.DatasetFeatureStatisticsList,
) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    """Feature name → statistics of the (single) dataset in a TFDV stats list."""
    if not stats.datasets:
        return {}
    return {".".join(f.path.step) or f.name: f for f in stats.datasets[0].features}


def _count(feature: statistics_pb2.FeatureNameStatistics | None) -> int:
    return int(feature.num_stats.common_stats.num_non_missing) if feature else 0


def _mean(feature: statistics_pb2.FeatureNameStatistics) -> float:
    return float(feature.num_stats.mean)


def hu_problems(split: str, stats: statistics_pb2.DatasetFeatureStatisticsList, t: GateThresholds) -> list[str]:
    """Plausibility problems of one split: empty dose domains, air off -1000 HU, no tissue."""
    features = feature_stats(stats)
    problems = []
    for dose in DOSES:
        n = _count(features.get(stat_key(dose, "p01")))
        if n < t.min_images_per_dose:
            problems.append(f"{split}: {dose.upper()} has {n} images (need {t.min_images_per_dose})")
            continue
        air = _mean(features[stat_key(dose, "p01")])
        if abs(air - t.air_hu) > t.air_tolerance_hu:
            hint = "; RescaleIntercept off by about +1024?" if 800 < air - t.air_hu < 1250 else ""
            problems.append(
                f"{split}: {dose.upper()} air at {air:+.0f} HU, expected {t.air_hu:.0f}±{t.air_tolerance_hu:.0f}{hint}"
            )
        p99 = _mean(features[stat_key(dose, "p99")])
        if not t.min_tissue_p99_hu <= p99 <= t.max_mean_p99_hu:
            problems.append(
                f"{split}: {dose.upper()} mean 99th percentile {p99:+.0f} HU outside "
                f"[{t.min_tissue_p99_hu:.0f}, {t.max_mean_p99_hu:.0f}]"
            )
    return problems


def hu_overview(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, float]:
    """What the gate looked at in one split, per dose: image count and the mean air (p01),
    median and 99th-percentile HU of its slices. Recorded with the gate's output for lineage."""
    features = feature_stats(stats)
    summary: dict[str, float] = {}
    for dose in DOSES:
        summary[f"{dose}_images"] = _count(features.get(stat_key(dose, "p01")))
        if summary[f"{dose}_images"]:
            for stat in ("p01", "p50", "p99"):
                summary[f"{dose}_mean_{stat}_hu"] = round(_mean(features[stat_key(dose, stat)]), 1)
    return summary


def anomaly_descriptions(split: str, anomalies: anomalies_pb2.Anomalies) -> list[str]:
    """TFDV schema anomalies of one split as `split: feature: short description` strings."""
    found = [
        f"{split}: {name}: {info.short_description or info.description}"
        for name, info in sorted(anomalies.anomaly_info.items())
    ]
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        found.append(f"{split}: dataset: {info.short_description or info.description}")
    return found


STATS_FILE = "FeatureStats.pb"
ANOMALIES_FILE = "SchemaDiff.pb"


def load_statistics(split_uri: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """StatisticsGen's output for one split (a `Split-<name>` folder)."""
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    stats.ParseFromString(files.read_bytes(files.join(split_uri, STATS_FILE)))
    return stats


def load_anomalies(split_uri: str) -> anomalies_pb2.Anomalies:
    """ExampleValidator's output for one split; empty when it wrote none."""
    anomalies = anomalies_pb2.Anomalies()
    path = files.join(split_uri, ANOMALIES_FILE)
    if files.exists(path):
        anomalies.ParseFromString(files.read_bytes(path))
    return anomalies


_FAILURE_PREFIX, _SEPARATOR = "HU gate failed: ", "; "


def failure_text(problems: list[str]) -> str:
    """The gate's one-line failure message; `problems_in` reads it back."""
    return _FAILURE_PREFIX + _SEPARATOR.join(problems)


def problems_in(message: str) -> list[str]:
    """The problems of a message written by `failure_text` (the error the failed gate raised)."""
    line = next((line for line in message.splitlines() if _FAILURE_PREFIX in line), "")
    reasons = line.split(_FAILURE_PREFIX, 1)[-1].strip()
    return reasons.split(_SEPARATOR) if reasons else []


def gate_problems(splits: dict[str, tuple[str, str]], thresholds: GateThresholds) -> list[str]:
    """Every reason to stop: split name → (statistics split uri, anomalies split uri)."""
    problems = []
    for split, (stats_uri, anomalies_uri) in splits.items():
        problems += anomaly_descriptions(split, load_anomalies(anomalies_uri))
        problems += hu_problems(split, load_statistics(stats_uri), thresholds)
    return problems
