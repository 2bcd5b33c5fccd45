"""The image sets the quality benchmark scores denoisers on, each with its reference.

- simulated patients (procedural chest phantoms) for tuning and for testing, never trained on,
  with their noise-free truth;
- real anatomy: clinical CT slices that pydicom and pydicom-data ship (not made by this
  project), scanned at low dose by the simulator (`simulate --from`); a real source is its own
  NDCT and reference (its `truth` is the NDCT: noise insertion has no noise-free image);
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
lossy copies of 693 are left out. Each file becomes one simulated patient: seven slices from six
files (`eCT_Supplemental.dcm` has two frames; `J2K_pixelrep_mismatch.dcm` is gantry-tilted, −22°,
and read as the simulator reads any source, a 2-D image to rescan)."""


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

    def found(name: str) -> Path:
        path = get_testdata_file(name)
        if path is None:
            raise FileNotFoundError(f"{name}: not in pydicom's test data (is pydicom-data installed?)")
        return Path(path)

    staging = staged(
        cache / "real_anatomy_sources", {f"{i:02d}_{name}": found(name) for i, name in enumerate(REAL_SLICES)}
    )
    patients = len(find_patients(staging).patients)
    data = datasets.simulated(cache, patients=patients, slices=None, size=size, seed=seed, from_dir=staging)
    return images(data)


def real_training_set(
    cache: Path, folders: list[Path], *, slices: int | None, size: int, seed: int
) -> datasets.DicomSet:
    """The real patients of `folders` rescanned together (one simulated patient each, `slices` of
    each or all), at doses drawn per slice from `datasets.REAL_TRAIN_DOSE`."""
    sources = staged(cache / ("real_train_" + "+".join(sorted(f.name for f in folders))), {f.name: f for f in folders})
    return datasets.simulated(
        cache,
        patients=len(folders),
        slices=slices,
        size=size,
        seed=seed,
        from_dir=sources,
        dose=datasets.REAL_TRAIN_DOSE,
    )


def staged(folder: Path, sources: dict[str, Path]) -> Path:
    """`folder` holding a copy of each source (a file or a patient's folder) under its name,
    made once: the simulator reads several source patients from one folder."""
    if not folder.is_dir():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for name, source in sources.items():
            copy = shutil.copytree if source.is_dir() else shutil.copyfile
            copy(source, partial / name)
        partial.rename(folder)
    return folder


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
