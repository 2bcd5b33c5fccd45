"""Pair one patient's LDCT and NDCT slices by z position (SPEC §2).

Pure Python on already-decoded slices, so it is tested without Beam and runs inside the
Beam pipeline per patient.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from components.dicom_hu import SliceRecord
from components.features import DOSES, Z_TOLERANCE_MM


@dataclass
class PatientSlices:
    """The outcome for one patient: examples to write, files kept, files rejected."""

    examples: list[tuple[str, dict[str, SliceRecord]]] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    rejected: list[dict[str, str]] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        return sum(len(images) == len(DOSES) for _key, images in self.examples)


def pair_patient(patient_id: str, slices: list[tuple[str, SliceRecord]]) -> PatientSlices:
    """Group `(dose, slice)` items into examples; a repeated position in one dose is rejected.

    Files are visited in path order, so which of two duplicates is kept is deterministic.
    """
    result = PatientSlices()
    kept: dict[str, list[SliceRecord]] = {dose: [] for dose in DOSES}
    duplicates: dict[str, str] = {}
    for dose, rec in sorted(slices, key=lambda item: (item[1].rel_path, item[1].frame or 0)):
        twin = _same_position(rec, kept[dose])
        if twin is None:
            kept[dose].append(rec)
            result.accepted.add(rec.rel_path)
        else:
            duplicates.setdefault(rec.rel_path, f"duplicate slice position z={rec.z:.2f} mm (kept {twin.rel_path})")
    for path, reason in sorted(duplicates.items()):
        if path not in result.accepted:
            result.rejected.append({"path": path, "reason": reason})
    result.examples = _match(patient_id, kept["ldct"], kept["ndct"])
    return result


def _same_position(rec: SliceRecord, kept: list[SliceRecord]) -> SliceRecord | None:
    if rec.z is None:
        return None
    return next((k for k in kept if k.z is not None and abs(k.z - rec.z) <= Z_TOLERANCE_MM), None)


def _match(
    patient_id: str, ldct: list[SliceRecord], ndct: list[SliceRecord]
) -> list[tuple[str, dict[str, SliceRecord]]]:
    """LDCT and NDCT slices whose z positions agree within tolerance share one example."""
    unmatched = list(ndct)
    examples = []
    for low in ldct:
        partner = _same_position(low, unmatched)
        images = {"ldct": low}
        if partner is not None:
            unmatched.remove(partner)
            images["ndct"] = partner
        examples.append((slice_key(patient_id, low), images))
    examples.extend((slice_key(patient_id, rec), {"ndct": rec}) for rec in unmatched)
    return sorted(examples, key=lambda e: e[0])


def slice_key(patient_id: str, rec: SliceRecord) -> str:
    """Patient + z position, or patient + file stem (+ frame) when the file has no position."""
    if rec.z is not None:
        return f"{patient_id}/z={rec.z:+.2f}"
    stem = PurePosixPath(rec.rel_path).stem
    return f"{patient_id}/{stem}" + (f"#{rec.frame}" if rec.frame is not None else "")
