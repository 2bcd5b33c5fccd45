"""`ctdenoise simulate`: a paired LDCT/NDCT DICOM data set made physically (docs/design.md, "Data contract",
design, "Command line contract").

A procedural phantom's slice is projected once and scanned twice, at full dose and at `dose`,
then reconstructed by FBP; a real full-dose slice (`from_dir`) stays the NDCT as its scanner
wrote it, and the LDCT adds the noise that lowering the dose adds, calibrated to the slice's own
noise with the kernel that matches its noise grain (see `physics`). Both are written as CT Image
Storage files in the original project's layout::

    out_dir/SIM001/NDCT/0001.dcm ... out_dir/SIM001/LDCT/0001.dcm ...

With `from_dir`, each source patient becomes one simulated patient named after it
(`ctdenoise.simulator.sources`), so one person never lands in two patients, nor two in one.
The two files of a slice share their z position (so ingestion pairs them), the two
doses are separate series of one study per patient, and everything, UIDs and the doses
drawn from a dose range included, is a pure function of the arguments: the same seed
gives byte-identical files.

With `truth_dir`, every slice's reference is written too, as a third series in the same layout,
``truth_dir/SIM001/TRUTH/0001.dcm``, outside the data root so that it is never ingested:
benchmarks score denoisers against it. For a phantom it is the noise-free reconstruction (what
both scans are noisy versions of); for a real source, which has no noise-free version, it is the
NDCT, as in the Mayo/AAPM data.
Odd-numbered patients are stored like most scanners (unsigned, intercept -1024),
even-numbered ones signed with intercept 0, so ingestion meets both conventions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from ctdenoise.contract.noise import flat_rois, measure
from ctdenoise.simulator import physics
from ctdenoise.simulator.dicom_writer import SeriesInfo, write_ct_slice
from ctdenoise.simulator.phantom import FOV_MM, random_anatomy, render
from ctdenoise.simulator.sources import GroundTruth, find_patients, ground_truth, spread

SLICE_THICKNESS_MM = 3.0
KERNEL_SLICES = 3
"""On how many of a real patient's slices, spread over its length, its kernel is chosen: one slice's
grain is a noisy guide, and the grain the flat regions show changes along the body."""
PROGRESS_MIN_SLICES = 8
"""Patients with at least this many slices report each quarter; smaller ones once, when done."""
FULL_DOSE_MA = 300
"""Nominal tube current of the full-dose series; a low-dose slice records its dose × this."""
EXPOSURE_TIME_MS = 500
"""Nominal exposure time of every slice: Exposure (mAs) scales with the dose like the current."""
TRUTH = "TRUTH"
"""Folder name of the noise-free series under each patient of `truth_dir`."""
PHANTOM_PATIENTS, PHANTOM_SLICES = 3, 4
"""The phantom data set's size when none is asked for."""


@dataclass(frozen=True)
class DoseRange:
    """The low-dose fraction of the full dose: one value, or a range drawn from per slice, as
    tube-current modulation varies the dose along a real scan."""

    low: float
    high: float

    @classmethod
    def parse(cls, text: str | float) -> DoseRange:
        """`0.25` or `0.1:0.5`; raises ValueError with a one-line reason."""
        parts = str(text).split(":")
        try:
            values = [float(part) for part in parts]
        except ValueError:
            raise ValueError(f"dose must be a fraction such as 0.25 or a range such as 0.1:0.5, got {text!r}") from None
        if len(values) > 2:
            raise ValueError(f"dose must be a fraction or one range LOW:HIGH, got {text!r}")
        low, high = values[0], values[-1]
        if not 0 < low <= high <= 1:
            raise ValueError(f"dose must be a fraction in (0, 1], or a range LOW:HIGH within it, got {text}")
        return cls(low, high)

    def draw(self, rng: np.random.Generator) -> float:
        return self.low if self.low == self.high else float(rng.uniform(self.low, self.high))

    def __str__(self) -> str:
        return f"{self.low:g}" if self.low == self.high else f"{self.low:g}:{self.high:g}"

    def label(self) -> str:
        """The dose as the low-dose series description gives it."""
        return f"{self.low:.0%}" if self.low == self.high else f"{self.low:.0%}-{self.high:.0%}"


@dataclass(frozen=True)
class PatientReport:
    """One simulated patient: where its anatomy came from, each slice's dose fraction, and its kernel."""

    source: str
    doses: list[float]
    kernel: str = physics.DEFAULT_KERNEL


@dataclass
class SimulationReport:
    """What `simulate_dataset` wrote."""

    out_dir: Path
    patients: dict[str, PatientReport]
    files_written: int
    seconds: float
    truth_dir: Path | None = None

    def as_json(self) -> dict:
        """The summary `simulate --summary` writes."""
        return {
            "out_dir": str(self.out_dir),
            "truth_dir": str(self.truth_dir) if self.truth_dir else None,
            "files_written": self.files_written,
            "seconds": round(self.seconds, 1),
            "patients": {
                name: {"source": p.source, "slices": len(p.doses), "doses": p.doses, "kernel": p.kernel}
                for name, p in self.patients.items()
            },
        }


@dataclass(frozen=True)
class _Patient:
    """One patient to write: its folder name, where it came from, and its ground-truth slices
    (made lazily, so only one slice's pixels are held at a time)."""

    name: str
    source: str
    truths: Iterator[GroundTruth]
    slices: int
    kernel_sample: tuple[GroundTruth, ...] = ()
    """For a real full-dose scan (which gets noise inserted, where a phantom is rescanned): the
    slices, spread over its length, that its kernel is chosen on."""

    @property
    def real(self) -> bool:
        return bool(self.kernel_sample)


def simulate_dataset(
    out_dir: Path,
    *,
    patients: int | None = None,
    slices: int | None = None,
    size: int = 256,
    dose: float | str | DoseRange = 0.25,
    seed: int = 0,
    from_dir: Path | None = None,
    truth_dir: Path | None = None,
    progress: Callable[[str], None] | None = print,
) -> SimulationReport:
    """Write `patients` × `slices` LDCT/NDCT slice pairs of `size`² pixels under `out_dir`
    (and their noise-free truth under `truth_dir`, when given).

    Phantoms by default (PHANTOM_PATIENTS of PHANTOM_SLICES slices). With `from_dir`, real CT
    slices replace them: each source patient becomes one simulated patient, `patients`
    (default all) may not exceed how many there are, and `slices` (default all) are spread
    evenly over each one's length. `dose` is a fraction or a range ("0.1:0.5", a `DoseRange`)
    drawn from per slice. `out_dir` must be new or empty, so slices of an earlier run can never
    mix into this data set. Raises ValueError with a one-line reason for bad arguments. Costs
    about 0.06 s per slice pair at size 128, 0.4 s at 256 and 3.5-4 s at 512 (one core).
    """
    out_dir = Path(out_dir)
    from_dir = Path(from_dir) if from_dir is not None else None
    truth_dir = Path(truth_dir) if truth_dir is not None else None
    doses = dose if isinstance(dose, DoseRange) else DoseRange.parse(dose)
    _check_arguments(out_dir, patients, slices, size, seed, from_dir, truth_dir)
    say = progress or (lambda _line: None)
    start = time.perf_counter()
    if from_dir:
        plan = _real_patients(from_dir, patients, slices, size, say)
    else:
        plan = _phantom_patients(patients or PHANTOM_PATIENTS, slices or PHANTOM_SLICES, size, seed)
    asked = slices or ("all" if from_dir else PHANTOM_SLICES)
    run_key = f"{seed}|{size}|{asked}|{doses}|{from_dir.resolve() if from_dir else 'phantom'}"
    written: dict[str, PatientReport] = {}
    for index, patient in enumerate(plan, start=1):
        truth_folder = truth_dir / patient.name / TRUTH if truth_dir else None
        drawn, kernel = _write_patient(out_dir / patient.name, truth_folder, patient, index, doses, seed, run_key, say)
        written[patient.name] = PatientReport(patient.source, drawn, kernel)
    seconds = time.perf_counter() - start
    pairs = sum(len(p.doses) for p in written.values())
    truth_note = f" and {pairs} reference files to {truth_dir}" if truth_dir else ""
    say(f"simulate: wrote {2 * pairs} files for {len(written)} patients to {out_dir}{truth_note} in {seconds:.1f} s")
    return SimulationReport(out_dir, written, 2 * pairs, seconds, truth_dir)


def _check_arguments(
    out_dir: Path,
    patients: int | None,
    slices: int | None,
    size: int,
    seed: int,
    from_dir: Path | None,
    truth_dir: Path | None,
) -> None:
    """Refuse what would fail later or produce a misleading data set."""
    out, truth = out_dir.resolve(), truth_dir.resolve() if truth_dir else None
    checks = [
        (patients is None or patients >= 1, f"patients must be at least 1, got {patients}"),
        (slices is None or slices >= 1, f"slices must be at least 1, got {slices}"),
        (size >= 32, f"size must be at least 32 pixels, got {size}"),
        (seed >= 0, f"seed must be non-negative, got {seed}"),
        (from_dir is None or from_dir.is_dir(), f"--from folder {from_dir} does not exist"),
        (_new_or_empty(out_dir), f"output folder {out_dir} is not empty; simulate into a new folder"),
        (
            truth is None or not (truth.is_relative_to(out) or out.is_relative_to(truth)),
            f"--truth folder {truth_dir} must lie outside the data folder {out_dir} (it must never be ingested)",
        ),
        (truth_dir is None or _new_or_empty(truth_dir), f"--truth folder {truth_dir} is not empty"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def _new_or_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def _phantom_patients(patients: int, slices: int, size: int, seed: int) -> list[_Patient]:
    """Per patient, its procedural phantom cut at contiguous slice positions centred on z = 0."""
    spacing = FOV_MM / size
    positions = [SLICE_THICKNESS_MM * (i - (slices - 1) / 2) for i in range(slices)]

    def cut(index: int) -> Iterator[GroundTruth]:
        anatomy = random_anatomy(np.random.default_rng([seed, 1, index]))
        return (GroundTruth(render(anatomy, size, spacing, z), spacing, z, SLICE_THICKNESS_MM) for z in positions)

    return [_Patient(f"SIM{index:03d}", "phantom", cut(index), slices) for index in range(1, patients + 1)]


def _real_patients(
    from_dir: Path, patients: int | None, slices: int | None, size: int, say: Callable[[str], None]
) -> list[_Patient]:
    """The first `patients` source patients of `from_dir`, `slices` of each spread over its length."""
    sources = find_patients(from_dir)
    found = sources.patients
    if sources.skipped:
        path, reason = sources.skipped[0]
        say(
            f"simulate: skipped {len(sources.skipped)} files of {from_dir} that are not CT slices to scan, "
            f"e.g. {path}: {reason}"
        )
    if not found:
        raise ValueError(f"--from folder {from_dir} holds no readable CT slices")
    if patients is not None and patients > len(found):
        raise ValueError(
            f"--patients {patients}: --from folder {from_dir} holds {len(found)} source "
            f"patients, and a source patient is never split"
        )
    say(f"simulate: {len(found)} source patients in {from_dir}")
    plan = []
    for source in found[:patients]:
        chosen = source.spread(slices)
        short = f", all it has (asked for {slices})" if slices and slices > len(chosen) else ""
        repeats = f"; {source.dropped} slices at a repeated position left out" if source.dropped else ""
        say(
            f"simulate: patient {source.name} from {source.origin}: {len(chosen)} of "
            f"{len(source.slices)} slices{short}{repeats}"
        )
        truths = (ground_truth(ref, size) for ref in chosen)
        sample = tuple(ground_truth(ref, size) for ref in spread(chosen, KERNEL_SLICES))
        plan.append(_Patient(source.name, source.origin, truths, len(chosen), kernel_sample=sample))
    return plan


def _write_patient(
    folder: Path,
    truth_folder: Path | None,
    patient: _Patient,
    index: int,
    doses: DoseRange,
    seed: int,
    run_key: str,
    say: Callable[[str], None],
) -> tuple[list[float], str]:
    """Scan and write every slice of one patient as an NDCT and an LDCT series (and the reference
    series into `truth_folder`); return each slice's dose fraction and the patient's kernel."""
    full, low, reference = _series(patient.name, doses, run_key, patient.real)
    representation = "uint16" if index % 2 else "int16"
    drawn: list[float] = []
    kernel = _source_kernel(patient.name, patient.kernel_sample, say) if patient.real else physics.DEFAULT_KERNEL
    for number, truth in enumerate(patient.truths, start=1):
        dose = doses.draw(np.random.default_rng([seed, 3, index, number]))
        rng = np.random.default_rng([seed, 2, index, number])
        if patient.real:
            scans = _insert(truth, dose, rng, kernel)
        else:
            thickness = truth.thickness_mm or SLICE_THICKNESS_MM
            scans = physics.rescan(truth.hu, truth.pixel_spacing_mm, thickness, dose, rng, truth_folder is not None)
        gain = scans.aec_gain
        extra = {"ConvolutionKernel": scans.kernel.upper()}
        outputs = [(folder / "NDCT", full, scans.ndct, gain), (folder / "LDCT", low, scans.ldct, dose * gain)]
        if truth_folder is not None and scans.reference is not None:  # asked for, so made
            outputs.append((truth_folder, reference, scans.reference, gain))
        for dose_dir, series, image, fraction in outputs:
            dose_dir.mkdir(parents=True, exist_ok=True)
            write_ct_slice(
                dose_dir / f"{number:04d}.dcm",
                image,
                series,
                instance_number=number,
                z_mm=truth.z_mm,
                pixel_spacing_mm=truth.pixel_spacing_mm,
                slice_thickness_mm=truth.thickness_mm or SLICE_THICKNESS_MM,
                representation=representation,
                extra=_acquisition(fraction) | extra,
            )
        drawn.append(round(dose, 6))
        quarter = patient.slices >= PROGRESS_MIN_SLICES and number % (patient.slices // 4) == 0
        if number == patient.slices or quarter:
            say(f"simulate: patient {patient.name} slice {number}/{patient.slices}")
    return drawn, kernel


def measured_source(source: GroundTruth) -> physics.Measured | None:
    """A real slice with its own noise measured in its flat soft tissue, or None where it has none."""
    rois = flat_rois(source.hu)
    if rois is None:
        return None
    return physics.Measured(source.hu, source.pixel_spacing_mm, measure(source.hu, rois, source.pixel_spacing_mm), rois)


def _source_kernel(name: str, sample: tuple[GroundTruth, ...], say: Callable[[str], None]) -> str:
    """The kernel whose noise grain matches the source's over `sample`, slices spread over its
    length (the default kernel where none has flat soft tissue to measure)."""
    measured = [m for m in map(measured_source, sample) if m is not None]
    if not measured:
        say(f"simulate: patient {name}: no flat soft tissue to read its noise from: kernel {physics.DEFAULT_KERNEL}")
        return physics.DEFAULT_KERNEL
    kernel = physics.matching_kernel(measured)
    sigma = np.mean([m.noise.sigma_hu for m in measured])
    grain = np.mean([m.noise.mean_frequency for m in measured])
    say(f"simulate: patient {name}: source noise {sigma:.1f} HU, NPS mean frequency {grain:.3f} /mm: kernel {kernel}")
    return kernel


def _insert(source: GroundTruth, dose: float, rng: np.random.Generator, kernel: str) -> physics.Scans:
    """One real slice with the noise of `dose` inserted, calibrated to its own noise in its flat
    soft tissue; a slice without any (the top of a head) gets the simulator's own full-dose level
    for its size instead."""
    measured = measured_source(source)
    thickness = source.thickness_mm or SLICE_THICKNESS_MM
    return physics.insert(source.hu, source.pixel_spacing_mm, thickness, dose, rng, kernel, measured)


def _acquisition(fraction: float) -> dict:
    """The acquisition attributes of a slice scanned at `fraction` of the nominal full dose (its
    dose times its AEC gain): the tube current and the exposure scale with it (ExposureInuAs
    keeps the fraction to five digits)."""
    return {
        "BodyPartExamined": "CHEST",
        "XRayTubeCurrent": round(FULL_DOSE_MA * fraction),
        "ExposureTime": EXPOSURE_TIME_MS,
        "Exposure": round(FULL_DOSE_MA * EXPOSURE_TIME_MS / 1000 * fraction),
        "ExposureInuAs": round(FULL_DOSE_MA * EXPOSURE_TIME_MS * fraction),
    }


def _series(patient: str, doses: DoseRange, run_key: str, real: bool) -> tuple[SeriesInfo, SeriesInfo, SeriesInfo]:
    """The NDCT, LDCT and reference series of one patient's study, with UIDs derived from the run."""

    def uid(role: str) -> str:
        return generate_uid(entropy_srcs=[run_key, patient, role])

    study, frame, name = uid("study"), uid("frame"), f"Simulated^{patient}"
    full = SeriesInfo(patient, name, study, uid("NDCT"), 1, "NDCT full dose (simulated)", frame)
    low = SeriesInfo(patient, name, study, uid("LDCT"), 2, f"LDCT {doses.label()} dose (simulated)", frame)
    about = "reference: the full-dose source as scanned" if real else "noise-free ground truth (simulated)"
    reference = SeriesInfo(patient, name, study, uid(TRUTH), 3, about, frame)
    return full, low, reference
