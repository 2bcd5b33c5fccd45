"""Real full-dose CT as the simulator's ground truth, one source patient at a time (docs/design.md, "Data contract").

A folder given to `simulate --from` may hold several people. Mixing two of them in one
simulated patient, or one of them in two, would let the train/eval split put one person on
both sides, so slices are grouped by source patient first: by PatientID, or by the top
folder under the source root when a file has none. Each group becomes exactly one simulated
patient named after it. Only HU, geometry and the PatientID the source already holds are
read; nothing else from the source header reaches the written files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import cast

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from skimage.transform import resize

from ctdenoise.contract.hu import CT_CEILING_HU, CT_FLOOR_HU
from ctdenoise.dicomio.reader import DicomRejected, ReadOptions, SliceRecord, read_ct_slices
from ctdenoise.simulator.phantom import AIR_HU, FOV_MM
from ctdenoise.storage import files

SOURCE_READ = ReadOptions(allow_tilt=True)
"""How source slices are read: a gantry-tilted slice is still a 2-D image to rescan, and the
simulated series is written axial."""
NAME_LIMIT = 64
"""Longest simulated patient name taken from a source PatientID (a folder name, kept short)."""


@dataclass(frozen=True)
class GroundTruth:
    """One full-dose anatomy slice to scan: HU on a square grid, its pixel size and position."""

    hu: np.ndarray
    pixel_spacing_mm: float
    z_mm: float
    thickness_mm: float


@dataclass(frozen=True)
class SliceRef:
    """Where one source slice is, without its pixels: a patient's slices are chosen before any is kept."""

    path: Path
    frame: int
    z_mm: float | None


@dataclass(frozen=True)
class SourcePatient:
    """The slices of one source person, in scan order (by z when every slice has one)."""

    name: str
    origin: str
    """The source folder (or file) this patient's slices came from, relative to the source root."""
    slices: tuple[SliceRef, ...]
    dropped: int = 0
    """Slices left out because another slice of this patient already sits at their z."""

    def spread(self, count: int | None) -> tuple[SliceRef, ...]:
        """`count` slices spread evenly over the patient's length (all of them for None), so a
        few slices still cover the anatomy from one end to the other, not only its first part."""
        return spread(self.slices, count)


def spread(slices: tuple[SliceRef, ...], count: int | None) -> tuple[SliceRef, ...]:
    """`count` of `slices` spread evenly over them (all of them for None)."""
    total = len(slices)
    if count is None or count >= total:
        return slices
    picks = ((np.arange(count) + 0.5) * total / count).astype(int)
    return tuple(slices[i] for i in picks)


@dataclass(frozen=True)
class Sources:
    """What a source root holds: its patients, and each file skipped with the reason."""

    patients: list[SourcePatient]
    skipped: list[tuple[str, str]]


def find_patients(root: Path) -> Sources:
    """Every source patient under `root` with at least one readable CT slice, in path order
    of their first file; files that are not CT slices the reader accepts are skipped, each
    listed with its reason."""
    groups: dict[str, _Group] = {}
    skipped: list[tuple[str, str]] = []
    listing = files.list_tree(str(root))  # links followed, as ingestion follows them
    skipped += [(problem["path"], problem["reason"]) for problem in listing.problems]
    for rel in sorted(map(PurePosixPath, listing.files)):  # folder by folder, as the paths read
        path = root / rel
        try:
            records = read_ct_slices(path, rel.as_posix(), SOURCE_READ)
        except DicomRejected as rejected:
            skipped.append((rel.as_posix(), rejected.reason))
            continue
        top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        patient_id = _patient_id(path)
        key = f"id:{patient_id}" if patient_id else f"folder:{top}"
        group = groups.setdefault(key, _Group(patient_id or top))
        group.add(top + ("/" if len(rel.parts) > 1 else ""), path, records)
    taken: set[str] = set()
    return Sources([group.patient(_unique(_folder_name(group.label), taken)) for group in groups.values()], skipped)


@dataclass
class _Group:
    """The slices of one source patient while the source root is walked."""

    label: str
    origins: list[str] = field(default_factory=list)
    refs: list[SliceRef] = field(default_factory=list)

    def add(self, origin: str, path: Path, records: list[SliceRecord]) -> None:
        if origin not in self.origins:
            self.origins.append(origin)
        self.refs.extend(SliceRef(path, frame, record.z) for frame, record in enumerate(records))

    def patient(self, name: str) -> SourcePatient:
        """In z order when every slice has a position; one slice per position, the first by path."""
        if any(ref.z_mm is None for ref in self.refs):
            return SourcePatient(name, ", ".join(self.origins), tuple(self.refs))
        by_z: dict[float, SliceRef] = {}
        for ref in self.refs:
            by_z.setdefault(round(cast(float, ref.z_mm), 3), ref)  # none is None (checked above)
        ordered = tuple(by_z[z] for z in sorted(by_z))
        return SourcePatient(name, ", ".join(self.origins), ordered, len(self.refs) - len(ordered))


def _patient_id(path: Path) -> str:
    """The file's PatientID, read alone (no other identifying tag is decoded); "" when absent."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"], force=True)
    except (InvalidDicomError, OSError, ValueError):
        return ""
    return str(ds.get("PatientID", "") or "").strip()


def _folder_name(label: str) -> str:
    """A patient folder name from a PatientID or folder name: letters, digits, '.', '_' and '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._-")[:NAME_LIMIT]
    return name or "patient"


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`... when two source patients clean up to the same name."""
    candidate, number = name, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{name}-{number}"
    taken.add(candidate.lower())
    return candidate


def ground_truth(ref: SliceRef, size: int) -> GroundTruth:
    """The slice read again, padded square with air and resized (anti-aliased) to `size`; the pixel
    size scales with the resize, so the written spacing stays the real one. Nothing is cut: the
    simulator projects the whole square."""
    record = read_ct_slices(ref.path, ref.path.name, SOURCE_READ)[ref.frame]
    hu = np.clip(record.hu.astype(np.float64), CT_FLOOR_HU, CT_CEILING_HU)
    rows, cols = hu.shape
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    hu = np.pad(hu, ((top, side - rows - top), (left, side - cols - left)), constant_values=AIR_HU)
    hu = resize(hu, (size, size), anti_aliasing=True, preserve_range=True)
    spacing = record.pixel_spacing_mm * side / size if record.pixel_spacing_mm else FOV_MM / size
    return GroundTruth(hu, spacing, record.z if record.z is not None else 0.0, record.slice_thickness_mm or 0.0)
