"""`ctdenoise simulate`: a paired LDCT/NDCT DICOM data set made physically (docs/design.md §2, §3).

Each slice's ground truth (a procedural phantom, or a real full-dose slice with
`from_dir`) is projected once and scanned twice, at full dose and at `dose`·I0, then
reconstructed by FBP (see `physics`). Both reconstructions are written as CT Image
Storage files in the original project's layout::

    out_dir/SIM001/NDCT/0001.dcm ... out_dir/SIM001/LDCT/0001.dcm ...

The two files of a slice share their z position (so ingestion pairs them), the two
doses are separate series of one study per patient, and everything, UIDs included,
is a pure function of the arguments: the same seed gives byte-identical files.

With `truth_dir`, the noise-free reconstruction of every slice (what both scans are noisy
versions of) is written too, as a third series in the same layout,
``truth_dir/SIM001/TRUTH/0001.dcm``, outside the data root so that it is never ingested:
benchmarks score denoisers against it as well as against the noisy NDCT.
Odd-numbered patients are stored like most scanners (unsigned, intercept -1024),
even-numbered ones signed with intercept 0, so ingestion meets both conventions.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
from pydicom.uid import generate_uid
from skimage.transform import resize

from contract.hu import CT_CEILING_HU, CT_FLOOR_HU
from simulator.dicom_writer import SeriesInfo, write_ct_slice
from simulator.phantom import AIR_HU, FOV_MM, fov_mask, random_anatomy, render
from simulator.physics import scan_pair

if TYPE_CHECKING:
    from dicomio.reader import SliceRecord

SLICE_THICKNESS_MM = 3.0
PROGRESS_MIN_SLICES = 8
"""Patients with at least this many slices report each quarter; smaller ones once, when done."""
FULL_DOSE_MA = 300
"""Nominal tube current of the full-dose series; the low-dose series records dose × this."""
TRUTH = "TRUTH"
"""Folder name of the noise-free series under each patient of `truth_dir`."""


@dataclass
class SimulationReport:
    """What `simulate_dataset` wrote."""

    out_dir: Path
    patients: list[str]
    files_written: int
    seconds: float
    truth_dir: Path | None = None


@dataclass(frozen=True)
class GroundTruth:
    """One full-dose anatomy slice to scan: HU on a square grid and its pixel size."""

    hu: np.ndarray
    pixel_spacing_mm: float


def simulate_dataset(out_dir: Path, *, patients: int = 3, slices: int = 4, size: int = 256,
                     dose: float = 0.25, seed: int = 0, from_dir: Path | None = None,
                     truth_dir: Path | None = None,
                     progress: Callable[[str], None] | None = print) -> SimulationReport:
    """Write `patients` × `slices` LDCT/NDCT slice pairs of `size`² pixels under `out_dir`
    (and their noise-free truth under `truth_dir`, when given).

    With `from_dir`, real CT slices found there (recursively, in path order) replace
    the procedural phantoms, `slices` consecutive ones per patient; fewer patients
    are written when there are not enough slices. `out_dir` must be new or empty, so
    slices of an earlier run can never mix into this data set. Raises ValueError
    with a one-line reason for bad arguments. Costs about 0.06 s per slice pair at
    size 128, 0.4 s at 256 and 3.5-4 s at 512 (one core).
    """
    out_dir = Path(out_dir)
    from_dir = Path(from_dir) if from_dir is not None else None
    truth_dir = Path(truth_dir) if truth_dir is not None else None
    _check_arguments(out_dir, patients, slices, size, dose, seed, from_dir, truth_dir)
    say = progress or (lambda _line: None)
    start = time.perf_counter()
    source = _dicom_truth(from_dir, size, slices) if from_dir else _phantom_truth(size, slices, seed)
    run_key = f"{seed}|{size}|{slices}|{dose}|{from_dir.resolve() if from_dir else 'phantom'}"
    written: list[str] = []
    for index, truths in zip(range(1, patients + 1), source):
        patient = f"SIM{index:03d}"
        truth_folder = truth_dir / patient / TRUTH if truth_dir else None
        _write_patient(out_dir / patient, truth_folder, patient, index, truths, dose, seed, run_key, say)
        written.append(patient)
    if len(written) < patients:
        say(f"simulate: {from_dir} holds slices for only {len(written)} of {patients} patients")
    seconds = time.perf_counter() - start
    files = 2 * slices * len(written)
    truth_note = f" and {files // 2} noise-free files to {truth_dir}" if truth_dir else ""
    say(f"simulate: wrote {files} files for {len(written)} patients to {out_dir}{truth_note} in {seconds:.1f} s")
    return SimulationReport(out_dir, written, files, seconds, truth_dir)


def _check_arguments(out_dir: Path, patients: int, slices: int, size: int, dose: float,
                     seed: int, from_dir: Path | None, truth_dir: Path | None) -> None:
    """Refuse what would fail later or produce a misleading data set."""
    out, truth = out_dir.resolve(), truth_dir.resolve() if truth_dir else None
    checks = [
        (patients >= 1, f"patients must be at least 1, got {patients}"),
        (slices >= 1, f"slices must be at least 1, got {slices}"),
        (size >= 32, f"size must be at least 32 pixels, got {size}"),
        (0 < dose <= 1, f"dose must be a fraction in (0, 1], got {dose}"),
        (seed >= 0, f"seed must be non-negative, got {seed}"),
        (from_dir is None or from_dir.is_dir(), f"--from folder {from_dir} does not exist"),
        (_new_or_empty(out_dir), f"output folder {out_dir} is not empty; simulate into a new folder"),
        (truth is None or not (truth.is_relative_to(out) or out.is_relative_to(truth)),
         f"--truth folder {truth_dir} must lie outside the data folder {out_dir} (it must never be ingested)"),
        (truth_dir is None or _new_or_empty(truth_dir), f"--truth folder {truth_dir} is not empty"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _new_or_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def _phantom_truth(size: int, slices: int, seed: int) -> Iterator[list[GroundTruth]]:
    """Per patient, its procedural phantom cut at the simulated slice positions."""
    spacing = FOV_MM / size
    for index in itertools.count(1):
        anatomy = random_anatomy(np.random.default_rng([seed, 1, index]))
        yield [GroundTruth(render(anatomy, size, spacing, z), spacing) for z in _z_positions(slices)]


def _dicom_truth(from_dir: Path, size: int, slices: int) -> Iterator[list[GroundTruth]]:
    """Per patient, `slices` consecutive real CT slices resampled to `size`; stops when short."""
    from dicomio.reader import DicomRejected, read_ct_slices

    def records() -> Iterator[SliceRecord]:
        for path in sorted(p for p in from_dir.rglob("*") if p.is_file()):
            try:
                yield from read_ct_slices(path, path.relative_to(from_dir).as_posix())
            except DicomRejected:
                continue

    stream, first = records(), True
    while True:
        chunk = [_resampled(record, size) for _, record in zip(range(slices), stream)]
        if len(chunk) < slices:
            if first:
                raise ValueError(f"--from folder {from_dir} holds {len(chunk)} readable CT slices; "
                                 f"need at least {slices}")
            return
        first = False
        yield chunk


def _resampled(record: SliceRecord, size: int) -> GroundTruth:
    """A real slice padded square with air, resized (anti-aliased) to `size`, air outside the FOV."""
    hu = np.clip(record.hu.astype(np.float64), CT_FLOOR_HU, CT_CEILING_HU)
    rows, cols = hu.shape
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    hu = np.pad(hu, ((top, side - rows - top), (left, side - cols - left)), constant_values=AIR_HU)
    hu = resize(hu, (size, size), anti_aliasing=True, preserve_range=True)
    hu[~fov_mask(size)] = AIR_HU
    spacing = record.pixel_spacing_mm * side / size if record.pixel_spacing_mm else FOV_MM / size
    return GroundTruth(hu, spacing)


def _z_positions(slices: int) -> list[float]:
    """Contiguous slice centres, SLICE_THICKNESS_MM apart, centred on z = 0."""
    return [SLICE_THICKNESS_MM * (i - (slices - 1) / 2) for i in range(slices)]


def _write_patient(folder: Path, truth_folder: Path | None, patient: str, index: int,
                   truths: list[GroundTruth], dose: float, seed: int, run_key: str,
                   say: Callable[[str], None]) -> None:
    """Scan and write every slice of one patient as an NDCT and an LDCT series (and the
    noise-free series into `truth_folder`)."""
    full, low, clean = _series(patient, dose, run_key)
    representation = "uint16" if index % 2 else "int16"
    for number, (truth, z) in enumerate(zip(truths, _z_positions(len(truths))), start=1):
        rng = np.random.default_rng([seed, 2, index, number])
        scans = scan_pair(truth.hu, truth.pixel_spacing_mm, dose, rng, noise_free=truth_folder is not None)
        outputs = [(folder / "NDCT", full, scans.ndct, 1.0), (folder / "LDCT", low, scans.ldct, dose)]
        if truth_folder is not None:
            outputs.append((truth_folder, clean, scans.noise_free, 1.0))
        for dose_dir, series, image, fraction in outputs:
            dose_dir.mkdir(parents=True, exist_ok=True)
            write_ct_slice(dose_dir / f"{number:04d}.dcm", image, series, instance_number=number,
                           z_mm=z, pixel_spacing_mm=truth.pixel_spacing_mm,
                           slice_thickness_mm=SLICE_THICKNESS_MM, representation=representation,
                           extra={"BodyPartExamined": "CHEST", "ConvolutionKernel": "RAMP",
                                  "XRayTubeCurrent": round(FULL_DOSE_MA * fraction)})
        if number == len(truths) or (len(truths) >= PROGRESS_MIN_SLICES and number % (len(truths) // 4) == 0):
            say(f"simulate: patient {patient} slice {number}/{len(truths)}")


def _series(patient: str, dose: float, run_key: str) -> tuple[SeriesInfo, SeriesInfo, SeriesInfo]:
    """The NDCT, LDCT and noise-free series of one patient's study, with UIDs derived from the run."""
    def uid(role: str) -> str:
        return generate_uid(entropy_srcs=[run_key, patient, role])

    study, frame, name = uid("study"), uid("frame"), f"Simulated^{patient}"
    full = SeriesInfo(patient, name, study, uid("NDCT"), 1, "NDCT full dose (simulated)", frame)
    low = SeriesInfo(patient, name, study, uid("LDCT"), 2, f"LDCT {dose:.0%} dose (simulated)", frame)
    clean = SeriesInfo(patient, name, study, uid(TRUTH), 3, "noise-free ground truth (simulated)", frame)
    return full, low, clean
