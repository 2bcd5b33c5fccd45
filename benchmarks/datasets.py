"""Benchmark data: simulated CT series (cached), many valid 512×512 files made cheaply from
a few simulated slices, and the ingestion Beam graph run as the product runs it.

Simulating a 512×512 slice pair costs about 4 s of one core, so the throughput benchmarks
simulate a handful of slices and copy them with pydicom into more patients and positions
(new UIDs, shifted z). The copies are real CT Image Storage files that the ingestion
accepts and pairs; each benchmark checks that in the ingestion report.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from ctdenoise.pipeline import configs
from ctdenoise.simulator.dataset import SLICE_THICKNESS_MM, simulate_dataset

DOSE = 0.25
REAL_TRAIN_DOSE = "0.1:0.5"
"""Doses of a real training patient's rescan, drawn per slice as tube-current modulation varies
them along a real scan; the range contains DOSE, at which validation and test are scanned."""
BASE_PATIENTS = 2
"""The simulator stores odd patients unsigned (intercept -1024) and even ones signed, so
two base patients make the copies cover both conventions."""


@dataclass(frozen=True)
class DicomSet:
    root: Path
    patients: list[str]
    files: int
    truth: Path | None = None
    """The noise-free series of every slice (`simulate --truth`), when simulated with it."""


def _complete_marker(folder: Path) -> Path:
    # Beside the folder, not in it: the ingestion would reject a stray file in the data root.
    return folder.with_name(folder.name + ".complete.json")


def _cached(folder: Path, params: dict) -> bool:
    """True when `folder` was fully built with `params`; otherwise it is cleared for a rebuild."""
    marker = _complete_marker(folder)
    if marker.is_file() and json.loads(marker.read_text()) == params and folder.is_dir():
        return True
    shutil.rmtree(folder, ignore_errors=True)
    marker.unlink(missing_ok=True)
    return False


def _mark_complete(folder: Path, params: dict) -> None:
    _complete_marker(folder).write_text(json.dumps(params))


def simulated(
    cache: Path,
    *,
    patients: int,
    slices: int | None,
    size: int,
    seed: int,
    from_dir: Path | None = None,
    dose: float | str = DOSE,
) -> DicomSet:
    """`simulate_dataset` output with its noise-free truth, reused when an identical one is
    cached; `from_dir` scans real full-dose slices instead of phantoms (`slices` None: all of
    each source patient's), `dose` may be a range LOW:HIGH."""
    params = {
        "patients": patients,
        "slices": slices,
        "size": size,
        "dose": dose,
        "seed": seed,
        "from": str(from_dir) if from_dir else None,
        "truth": True,
    }
    tag = (f"_from_{from_dir.name}" if from_dir else "") + ("" if dose == DOSE else f"_dose{dose}")
    root = cache / f"sim_p{patients}_s{slices or 'all'}_{size}px_seed{seed}{tag}"
    truth = root.with_name(root.name + ".truth")
    if not _cached(root, params):
        shutil.rmtree(truth, ignore_errors=True)
        root.parent.mkdir(parents=True, exist_ok=True)
        simulate_dataset(
            root,
            patients=patients,
            slices=slices,
            size=size,
            dose=dose,
            seed=seed,
            from_dir=from_dir,
            truth_dir=truth,
            progress=None,
        )
        _mark_complete(root, params)
    names = sorted(p.name for p in root.iterdir())
    return DicomSet(root, names, len(list(root.glob("*/*/*.dcm"))), truth)


def replicated(
    cache: Path, *, size: int, patients: int, slices: int, base_slices: int = 2, syntax: str | None = None
) -> DicomSet:
    """`patients` × `slices` LDCT/NDCT pairs copied from BASE_PATIENTS × `base_slices`
    simulated ones; `syntax` (a transfer syntax UID) re-encodes the copies, e.g. JPEG 2000."""
    base = simulated(cache, patients=BASE_PATIENTS, slices=base_slices, size=size, seed=0)
    params = {"size": size, "patients": patients, "slices": slices, "base_slices": base_slices, "syntax": syntax}
    tag = pydicom.uid.UID(syntax).keyword if syntax else "raw"
    root = cache / f"copies_p{patients}_s{slices}_{size}px_{tag}"
    if not _cached(root, params):
        for index in range(1, patients + 1):
            source = base.root / base.patients[(index - 1) % BASE_PATIENTS]
            _copy_patient(source, root / f"BENCH{index:03d}", base_slices, slices, syntax)
        _mark_complete(root, params)
    return DicomSet(root, sorted(p.name for p in root.iterdir()), 2 * patients * slices)


def _copy_patient(source: Path, target: Path, base_slices: int, slices: int, syntax: str | None) -> None:
    """One new patient: new study, series and instance UIDs, slices at new z positions."""
    patient = target.name
    study, frame = generate_uid(), generate_uid()
    for dose in ("LDCT", "NDCT"):
        series = generate_uid()
        (target / dose).mkdir(parents=True)
        for number in range(1, slices + 1):
            ds = pydicom.dcmread(source / dose / f"{(number - 1) % base_slices + 1:04d}.dcm")
            z = SLICE_THICKNESS_MM * (number - 1)
            ds.PatientID, ds.PatientName = patient, f"Bench^{patient}"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = number
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], z]
            ds.SliceLocation = z
            if syntax:
                ds.compress(syntax)
            ds.save_as(target / dose / f"{number:04d}.dcm", enforce_file_format=True)


def ingest(data: DicomSet, out: Path, *, workers: int = 2, threads: bool = False) -> dict:
    """The ingestion component's Beam graph on the DirectRunner, `workers` processes
    (multi_processing) or, with `threads`, threads of this process (multi_threading), or in
    memory in this process for workers=0 (the product default); returns the ingest report
    after checking every file was accepted."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from ctdenoise.components.dicom_example_gen.executor import build_ingest_pipeline, read_report
    from ctdenoise.components.dicom_example_gen.layout import Layout, assign_splits, scan

    if workers:
        mode = "multi_threading" if threads else "multi_processing"
        options = PipelineOptions([f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"])
    else:
        options = PipelineOptions(["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    found = scan(str(data.root), Layout())
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with beam.Pipeline(options=options) as p:
        build_ingest_pipeline(
            p,
            str(data.root),
            Layout(),
            assign_splits(found.patients, configs.EVAL_FRACTION),
            found.found,
            found.rejected,
            str(out),
        )
    report = read_report(str(out))
    if report["accepted"] != data.files or report["rejected"]:
        raise RuntimeError(
            f"ingestion of {data.root} accepted {report['accepted']} of {data.files} files; "
            f"rejected {report['rejected'][:3]}"
        )
    return report


def ingested(cache: Path, data: DicomSet) -> Path:
    """The Examples folder (Split-train, Split-eval) of `data`, ingested once (in memory,
    the product's default runner mode) and cached."""
    out = cache / f"examples_{data.root.name}"
    params = {"root": str(data.root), "files": data.files}
    if not _cached(out, params):
        ingest(data, out, workers=0)
        _mark_complete(out, params)
    return out


def train_patients(data: DicomSet) -> list[str]:
    """The patients the ingestion put into the train split."""
    from ctdenoise.components.dicom_example_gen.layout import assign_splits

    splits = assign_splits(set(data.patients), configs.EVAL_FRACTION)
    return sorted(p for p, split in splits.items() if split == "train")
