"""The image sets the quality benchmark scores denoisers on, each with its noise-free truth.

- simulated patients (procedural chest phantoms) for tuning and for testing, never trained on;
- real anatomy: clinical CT slices that pydicom and pydicom-data ship (not made by this
  project), scanned at low dose by the simulator (`simulate --from`);
- the QA phantom (a water cylinder with rods, `ctdenoise.simulator.qa_phantom`) scanned several
  times, for noise, noise texture and edge sharpness where the geometry is known.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import datasets

REAL_SLICES = (
    "693_UNCR.dcm",
    "explicit_VR-UN.dcm",
    "J2K_pixelrep_mismatch.dcm",
    "eCT_Supplemental.dcm",
    "bad_sequence.dcm",
    "CT_small.dcm",
)
"""Clinical CT files of pydicom's test data (head, abdomen, head, brain, spine, spine); the
lossy copies of 693 are left out. Each file becomes one simulated patient. The set holds six
slices from five of them: `J2K_pixelrep_mismatch.dcm` is gantry-tilted (-22°), and the reader
refuses a tilted slice as ingestion does; `eCT_Supplemental.dcm` has two frames."""


@dataclass(frozen=True)
class Images:
    """HU stacks [n, H, W] of one set: the low-dose and normal-dose scans and the truth."""

    ldct: np.ndarray
    ndct: np.ndarray
    truth: np.ndarray

    def __len__(self) -> int:
        return len(self.ldct)


@dataclass(frozen=True)
class QAScans(Images):
    """Scans of the QA phantom, and its rods: (centre (row, col) px, radius px, HU)."""

    rods: tuple = ()
    pixel_mm: float = 0.0


def images(data: datasets.DicomSet) -> Images:
    """Every slice of a simulated set, in file order."""
    from ctdenoise.dicomio.reader import read_ct_slices

    def read(folder: Path, dose: str) -> np.ndarray:
        files = sorted(folder.glob(f"*/{dose}/*.dcm"))
        return np.stack([read_ct_slices(f, f.name)[0].hu for f in files]).astype(np.float32)

    if data.truth is None:
        raise ValueError(f"{data.root}: simulated without its noise-free truth")
    return Images(read(data.root, "LDCT"), read(data.root, "NDCT"), read(data.truth, "TRUTH"))


def real_anatomy(cache: Path, size: int, seed: int) -> Images:
    """The clinical slices scanned at low dose, resampled to `size`: every slice of every source
    patient (slices that share a PatientID are one patient, never split)."""
    from pydicom.data import get_testdata_file

    from ctdenoise.simulator.sources import find_patients

    staging = cache / "real_anatomy_sources"
    if not staging.is_dir():
        partial = staging.with_name(staging.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        for index, name in enumerate(REAL_SLICES):
            path = get_testdata_file(name)
            if path is None:
                raise FileNotFoundError(f"{name}: not in pydicom's test data (is pydicom-data installed?)")
            target = partial / f"{index:02d}_{name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        partial.rename(staging)
    patients = len(find_patients(staging).patients)
    data = datasets.simulated(cache, patients=patients, slices=None, size=size, seed=seed, from_dir=staging)
    return images(data)


def qa_scans(size: int, scans: int, seed: int) -> QAScans:
    """The QA phantom scanned `scans` times at both doses (new noise each time)."""
    from ctdenoise.simulator.dataset import SLICE_THICKNESS_MM
    from ctdenoise.simulator.phantom import FOV_MM
    from ctdenoise.simulator.physics import rescan
    from ctdenoise.simulator.qa_phantom import qa_slice

    spacing = FOV_MM / size
    hu, rods = qa_slice(size, spacing)
    stacks: dict[str, list[np.ndarray]] = {"ldct": [], "ndct": [], "truth": []}
    for index in range(scans):
        result = rescan(
            hu, spacing, SLICE_THICKNESS_MM, datasets.DOSE, np.random.default_rng([seed, index]), noise_free=True
        )
        assert result.reference is not None  # asked for
        for key, image in (("ldct", result.ldct), ("ndct", result.ndct), ("truth", result.reference)):
            stacks[key].append(np.rint(image).astype(np.float32))  # as stored in DICOM: whole HU
    return QAScans(**{k: np.stack(v) for k, v in stacks.items()}, rods=tuple(rods), pixel_mm=spacing)
