"""Pair one patient's LDCT and NDCT slices by z position (docs/design.md, "Data contract"), and find files
that repeat another patient's.

Pure Python on already-decoded slices, so it is tested without Beam and runs inside the
Beam pipeline (per patient, and once over every file's identity).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ctdenoise.contract.features import DOSES, at_position
from ctdenoise.dicomio.reader import SliceRecord


@dataclass
class PatientSlices:
    """The outcome for one patient: examples to write, files kept, files rejected."""

    examples: list[tuple[str, dict[str, SliceRecord]]] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    rejected: list[dict[str, str]] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        return sum(len(images) == len(DOSES) for _key, images in self.examples)


@dataclass(frozen=True)
class FileIdentity:
    """What makes two paths one image: one file (`file_id`: a hard or symbolic link) or one
    SOPInstanceUID (a copy, or a re-export of one instance)."""

    rel_path: str
    patient_id: str
    file_id: str
    instance: str


def cross_patient_duplicates(files: Iterable[FileIdentity]) -> dict[str, str]:
    """rel_path → reason for every file whose file id or SOPInstanceUID an earlier file (in
    path order, folder by folder: P1/ before P1-copy/) of another patient has: a copy of one
    patient's images under a second patient folder would put the same images in both splits
    (docs/design.md, "Splits"). Repeats within one patient are `pair_patient`'s to judge."""
    first: dict[tuple[str, str], FileIdentity] = {}
    rejected: dict[str, str] = {}
    for file in sorted(files, key=lambda f: f.rel_path.split("/")):
        for what, value in (("the same file as", file.file_id), ("the same SOPInstanceUID as", file.instance)):
            earlier = first.setdefault((what, value), file) if value else file
            if earlier.patient_id != file.patient_id:
                rejected.setdefault(file.rel_path, f"duplicate across patients: {what} {earlier.rel_path}")
    return rejected


def pair_patient(patient_id: str, slices: list[tuple[str, SliceRecord]]) -> PatientSlices:
    """Group `(dose, slice)` items into examples. A second file holding an instance already
    seen (same SOPInstanceUID and frame) is rejected, and so is a repeated position in one dose.

    Files are visited in path order, so which of two duplicates is kept is deterministic.
    """
    result = PatientSlices()
    kept: dict[str, list[SliceRecord]] = {dose: [] for dose in DOSES}
    instances: dict[tuple[str, int], str] = {}
    duplicates: dict[str, str] = {}
    for dose, rec in sorted(slices, key=lambda item: (item[1].rel_path, item[1].frame or 0)):
        instance = (rec.instance, rec.frame or 0)
        first = instances.setdefault(instance, rec.rel_path) if rec.instance else rec.rel_path
        twin = at_position(kept[dose], rec.z)
        if first != rec.rel_path:
            duplicates.setdefault(rec.rel_path, f"duplicate instance: same SOPInstanceUID as {first}")
        elif twin is None:
            kept[dose].append(rec)
            result.accepted.add(rec.rel_path)
        else:
            duplicates.setdefault(rec.rel_path, f"duplicate slice position z={rec.z:.2f} mm (kept {twin.rel_path})")
    for path, reason in sorted(duplicates.items()):
        if path not in result.accepted:
            result.rejected.append({"path": path, "reason": reason})
    result.examples = _match(patient_id, kept["ldct"], kept["ndct"])
    return result


def _partner(low: SliceRecord, ndct: list[SliceRecord]) -> SliceRecord | None:
    """The NDCT slice at the LDCT slice's position on the same pixel grid: slices of
    different grids never share an example (an example has one height and width)."""
    partner = at_position(ndct, low.z)
    return partner if partner is not None and partner.hu.shape == low.hu.shape else None


def _match(
    patient_id: str, ldct: list[SliceRecord], ndct: list[SliceRecord]
) -> list[tuple[str, dict[str, SliceRecord]]]:
    """LDCT and NDCT slices whose z positions agree within tolerance (and whose grids agree)
    share one example."""
    unmatched = list(ndct)
    examples = []
    for low in ldct:
        partner = _partner(low, unmatched)
        images = {"ldct": low}
        if partner is not None:
            unmatched.remove(partner)
            images["ndct"] = partner
        examples.append((slice_key(patient_id, low), images))
    examples.extend((slice_key(patient_id, rec), {"ndct": rec}) for rec in unmatched)
    return sorted(_distinct_keys(examples), key=lambda e: e[0])


def _distinct_keys(examples: list[tuple[str, dict[str, SliceRecord]]]) -> list[tuple[str, dict[str, SliceRecord]]]:
    """One key per example: an LDCT and an NDCT slice that share a key without sharing an
    example (different grids, or no position and one file name) get their dose appended."""
    counts: dict[str, int] = {}
    for key, _ in examples:
        counts[key] = counts.get(key, 0) + 1
    return [
        (f"{key}/{next(iter(images))}" if counts[key] > 1 and len(images) == 1 else key, images)
        for key, images in examples
    ]


def slice_key(patient_id: str, rec: SliceRecord) -> str:
    """Patient + z position, or patient + file stem (+ frame) when the file has no position."""
    if rec.z is not None:
        return f"{patient_id}/z={rec.z:+.2f}"
    stem = PurePosixPath(rec.rel_path).stem
    return f"{patient_id}/{stem}" + (f"#{rec.frame}" if rec.frame is not None else "")
