"""DicomExampleGen's Beam pipeline on real files: pairing, splits, rejections, HU fidelity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctdenoise.components.dicom_example_gen.layout import Layout, assign_splits, scan
from ctdenoise.components.dicom_example_gen.pairing import pair_patient
from ctdenoise.contract import features
from ctdenoise.dicomio.reader import SliceRecord, read_ct_slices
from ctdenoise.storage.files import list_tree
from tests import dicom_factory as f
from tests.pipeline_helpers import ingest, read_examples


def records(tmp_path, dose_dir: str, zs: list[float]) -> list[tuple[str, SliceRecord]]:
    dose = "ldct" if dose_dir == "LDCT" else "ndct"
    out = []
    for i, z in enumerate(zs):
        path = f.write_slice(tmp_path, "P1", dose_dir, i, z)
        out += [(dose, r) for r in read_ct_slices(path, path.relative_to(tmp_path).as_posix())]
    return out


@pytest.mark.parametrize("low, high, shape", [(-1024, 3071, (64, 64)), (-3, 3, (7,)), (40, 41, (1,))])
def test_hu_stats_percentiles_equal_numpy(low, high, shape):
    hu = np.random.default_rng(0).integers(low, high, size=shape).astype(np.int16)
    summary = features.hu_stats(hu)
    expected = np.percentile(hu.astype(np.float64), [1, 50, 99])
    assert [summary["p01"], summary["p50"], summary["p99"]] == pytest.approx(expected)
    assert (summary["mean"], summary["std"], summary["min"], summary["max"]) == pytest.approx(
        (hu.mean(), hu.std(), hu.min(), hu.max())
    )


def test_pairing_by_z_within_tolerance(tmp_path):
    slices = records(tmp_path, "LDCT", [0.0, 3.0, 6.0]) + records(tmp_path, "NDCT", [0.005, 3.02, 6.0])
    outcome = pair_patient("P1", slices)
    assert outcome.pairs == 2
    keys = [key for key, _ in outcome.examples]
    assert len(keys) == 4 and len(set(keys)) == 4
    alone = [images for _, images in outcome.examples if len(images) == 1]
    assert sorted(next(iter(i.values())).z or 0.0 for i in alone) == [3.0, 3.02]
    assert not outcome.rejected and len(outcome.accepted) == 6


def test_a_slice_is_found_at_a_position_within_tolerance_and_one_without_a_position_nowhere():
    """The one position rule that pairing, the demo's picture and the report's panels share."""
    from types import SimpleNamespace as Slice

    slices = [Slice(z=None), Slice(z=3.0), Slice(z=6.0), Slice(z=6.008)]
    assert features.at_position(slices, 6.005) is slices[2]  # both are within tolerance: the first
    assert features.at_position(slices, 6.0 + 1.5 * features.Z_TOLERANCE_MM) is slices[3]
    assert features.at_position(slices, 3.0 - 1.5 * features.Z_TOLERANCE_MM) is None
    assert features.at_position(slices, None) is None  # not even the slice without a position


def test_duplicate_positions_keep_the_first_file_and_reject_the_rest(tmp_path):
    slices = records(tmp_path, "LDCT", [0.0, 0.004, 3.0])
    outcome = pair_patient("P1", slices)
    assert outcome.rejected == [
        {"path": "P1/LDCT/001.dcm", "reason": "duplicate slice position z=0.00 mm (kept P1/LDCT/000.dcm)"}
    ]
    assert len(outcome.examples) == 2


def test_splits_are_by_patient_deterministic_and_both_non_empty():
    patients = {f"P{i:03d}" for i in range(20)}
    first, second = assign_splits(patients, 0.25), assign_splits(set(sorted(patients, reverse=True)), 0.25)
    assert first == second
    assert sum(s == "eval" for s in first.values()) == 5
    assert set(assign_splits({"A", "B", "C"}, 0.25).values()) == {"train", "eval"}


def test_layout_scan_accounts_for_every_file(tmp_path):
    f.write_slice(tmp_path, "L067", "quarter_3mm", 0, 0.0)
    f.write_slice(tmp_path, "L067", "full_3mm", 0, 0.0)
    (tmp_path / "README.txt").write_text("notes")
    (tmp_path / "L067" / "quarter_3mm" / "scan.log").write_text("log")
    layout = Layout(("quarter_3mm",), ("full_3mm",), "*.dcm")
    result = scan(str(tmp_path), layout)
    assert {x.rel_path for x in result.found} == {"L067/quarter_3mm/000.dcm", "L067/full_3mm/000.dcm"}
    assert {r["path"]: r["reason"] for r in result.rejected} == {
        "README.txt": "not under <patient>/<quarter_3mm|full_3mm>/",
        "L067/quarter_3mm/scan.log": "name does not match '*.dcm'",
    }


def make_assorted_root(root: Path) -> dict[str, str]:
    """A data root like a real export: mixed syntaxes, multi-frame, and broken files.

    Returns rel_path → expected outcome ('ok' or a reason substring)."""
    expected = {}
    for i, z in enumerate([0.0, 3.0, 6.0, 9.0]):
        for dose in ("LDCT", "NDCT"):
            path = f.write_slice(root, "P1", dose, i, z, representation="int16" if dose == "NDCT" else "uint16")
            expected[path.relative_to(root).as_posix()] = "ok"
    for i, name in enumerate(sorted(f.COMPRESSIONS)):
        path = f.compress(f.write_slice(root, "P2", "LDCT", i, 3.0 * i), f.COMPRESSIONS[name])
        expected[path.relative_to(root).as_posix()] = "ok"
    enhanced = f.write_enhanced_ct(
        root / "P2" / "NDCT" / "enhanced.dcm",
        [f.body_hu(seed=s) for s in range(3)],
        [0.0, 3.0, 6.0],
        [1.0, 1.0, 1.0],
        [0.0, 0.0, 0.0],
    )
    expected[enhanced.relative_to(root).as_posix()] = "ok"
    clinical = root / "P3" / "LDCT" / "clinical_j2k"  # extension-less, as many PACS exports are
    clinical.parent.mkdir(parents=True)
    clinical.write_bytes(Path(f.pydicom_file("693_J2KI.dcm")).read_bytes())
    expected["P3/LDCT/clinical_j2k"] = "ok"
    broken = {
        "non_ct": (f.make_non_ct, "not CT"),
        "no_pixels": (f.strip_pixels, "no pixel data"),
        "truncated": (f.truncate, "pixel data"),
    }
    for i, (damage, reason) in enumerate(broken.values(), start=10):
        path = damage(f.write_slice(root, "P3", "NDCT", i, 100.0 + i))
        expected[path.relative_to(root).as_posix()] = reason
    (root / "P3" / "NDCT" / "junk.bin").write_bytes(b"\x00junk" * 50)
    expected["P3/NDCT/junk.bin"] = "not a DICOM file"
    dup = f.write_slice(root, "P1", "LDCT", 99, 3.001)
    expected[dup.relative_to(root).as_posix()] = "duplicate slice position"
    (root / "manifest.csv").write_text("a,b\n")
    expected["manifest.csv"] = "not under <patient>"
    return expected


def test_assorted_root_every_file_accounted_and_hu_identical(tmp_path):
    root, out = tmp_path / "data", tmp_path / "out"
    expected = make_assorted_root(root)
    report = ingest(root, out)
    assert len(list_tree(str(root)).files) == len(expected) == report["accepted"] + len(report["rejected"])
    rejected = {r["path"]: r["reason"] for r in report["rejected"]}
    for path, outcome in expected.items():
        if outcome == "ok":
            assert path not in rejected, (path, rejected.get(path))
        else:
            assert outcome in rejected[path], (path, rejected.get(path))
    examples = {s: read_examples(out, s) for s in features.SPLITS}
    assert {s: len(e) for s, e in examples.items()} == report["examples"]
    by_split: dict[str, set[str]] = {}
    for split, items in examples.items():
        for ex in items:
            feats = ex.features.feature
            patient = feats[features.PATIENT_ID].bytes_list.value[0].decode()
            by_split.setdefault(patient, set()).add(split)
            h, w = feats[features.HEIGHT].int64_list.value[0], feats[features.WIDTH].int64_list.value[0]
            for dose in [d for d in features.DOSES if features.image_key(d) in feats]:
                rel = feats[features.path_key(dose)].bytes_list.value[0].decode()
                hu = features.decode_hu(feats[features.image_key(dose)].bytes_list.value[0], h, w)
                source = read_ct_slices(root / rel, rel)
                assert any(np.array_equal(hu, s.hu) for s in source), rel
                assert feats[features.stat_key(dose, "mean")].float_list.value[0] == pytest.approx(
                    float(hu.mean()), abs=1e-3
                )
    assert all(len(splits) == 1 for splits in by_split.values()), by_split
    assert report["pairs"] == 4 + 3  # P1: four pairs; P2: compressed LDCT z 0,3,6 meet enhanced NDCT frames
