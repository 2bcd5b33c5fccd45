"""`ctdenoise denoise` with a PACS on either side: the input series read over WADO-RS into a
temporary folder, the derived series stored over STOW-RS (docs/design.md, "A PACS on either side: DICOMweb (`pull`,
`denoise`)").

The folder guarantees hold: the whole input is read and checked, and the destination is
reached and accepts the credentials, before the model loads; nothing is stored until the
whole derived series is written. The derived UIDs follow from the input and the model
(`ctdenoise.dicomio.derived.derived_uid`), and only instances the server does not yet hold are stored,
so a store that fails half-way names how many instances the server holds and the same
command completes it without duplicates.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pydicom

from ctdenoise.app.denoise import DenoiseError, DenoiseReport, check_strength, denoise_series
from ctdenoise.dicomweb_io.address import DicomwebAddress, is_dicomweb, parse
from ctdenoise.dicomweb_io.client import DicomwebError, Pacs

STORE_BATCH = 8
"""Instances per STOW-RS request: few enough that a failure costs little to redo."""
_CT = "CT"


def denoise_location(
    model_dir: str,
    source: str,
    target: str,
    *,
    png: bool = False,
    batch_size: int = 4,
    research_label: bool = True,
    strength_hu: float | None = None,
    progress: Callable[[str], None] | None = print,
) -> DenoiseReport:
    """`denoise_series` from a folder or a DICOMweb series (or a study of one CT series) into
    a new folder or a DICOMweb service (or the input's study on it)."""
    say = progress or (lambda _line: None)
    check_strength(strength_hu)
    destination = parse(target) if is_dicomweb(target) else None
    if destination is not None and destination.series:
        raise DenoiseError(
            f"--out {destination}: names a series, but the derived series is a new one; "
            "give the service or the input's study"
        )
    if destination is not None and png:
        raise DenoiseError("--png writes previews into the output folder; --out is a DICOMweb service here")
    with tempfile.TemporaryDirectory(prefix="ctdenoise-denoise-") as work:
        input_dir = fetch_series(parse(source), Path(work) / "input", say) if is_dicomweb(source) else Path(source)
        if destination is None:
            return denoise_series(
                model_dir,
                input_dir,
                Path(target),
                png=png,
                batch_size=batch_size,
                research_label=research_label,
                strength_hu=strength_hu,
                progress=progress,
            )
        study = _study_of(input_dir)
        if destination.study and destination.study != study:
            raise DenoiseError(
                f"--out {destination}: not the input's study {study}; a derived series stays in the study of its source"
            )
        pacs = Pacs(destination)
        pacs.series(["Modality"], study=study)  # reachable, and the credentials accepted, before the model runs
        report = denoise_series(
            model_dir,
            input_dir,
            Path(work) / "derived",
            batch_size=batch_size,
            research_label=research_label,
            strength_hu=strength_hu,
            progress=progress,
        )
        store_series(pacs, report.out_dir, study, report.series_uid, destination.base, say)
    return report


def fetch_series(
    address: DicomwebAddress,
    folder: Path,
    progress: Callable[[str], None],
    instances: list[str] | None = None,
    first: pydicom.Dataset | None = None,
) -> Path:
    """Every instance of the address's series (or of its study's one CT series) as files in `folder`;
    `instances` are its SOP Instance UIDs when the caller has just listed them, and `first` the
    first of them when it has already retrieved that one."""
    if not address.study:
        raise DenoiseError(
            f"--input {address}: give a series, .../studies/UID/series/UID (or a study of one CT series)"
        )
    pacs = Pacs(address)
    series = address.series or _only_ct_series(pacs, address)
    instances = pacs.instances(address.study, series) if instances is None else instances
    if not instances:
        raise DenoiseError(f"--input {address}: no such series on the server (it holds no instance of it)")
    folder.mkdir(parents=True)
    digits = max(4, len(str(len(instances))))
    for number, instance in enumerate(instances, 1):
        dataset = first if number == 1 and first is not None else pacs.retrieve(address.study, series, instance)
        dataset.save_as(folder / f"{number:0{digits}d}.dcm")
        if number == len(instances) or number % 25 == 0:
            progress(f"denoise: read {number}/{len(instances)} instances from {pacs.host}")
    return folder


def _only_ct_series(pacs: Pacs, address: DicomwebAddress) -> str:
    found = [
        entry.series
        for entry in pacs.series(["Modality"], study=address.study)
        if entry.attributes.get("Modality") == _CT
    ]
    if len(found) != 1:
        raise DenoiseError(
            f"--input {address}: the study holds {len(found)} CT series; give one, .../studies/UID/series/UID"
        )
    return found[0]


def _study_of(input_dir: Path) -> str:
    """The StudyInstanceUID of the series in `input_dir` (its first file; `denoise_series`
    checks that every file is of one series)."""
    first = next((p for p in sorted(input_dir.rglob("*")) if p.is_file()), None)
    try:
        study = pydicom.dcmread(first, stop_before_pixels=True).get("StudyInstanceUID", "") if first else ""
    except (pydicom.errors.InvalidDicomError, OSError):
        study = ""
    if not study:
        raise DenoiseError(
            f"{input_dir}: the input's first file names no study (StudyInstanceUID), so its "
            "derived series has no study to be stored in"
        )
    return str(study)


def store_series(
    pacs: Pacs, folder: Path, study: str, series: str, where: str, progress: Callable[[str], None]
) -> None:
    """STOW-RS the files of `folder` that the server does not hold yet, a batch at a time."""
    paths = sorted(folder.glob("*.dcm"))
    ours = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}
    held = set(pacs.instances(study, series))
    if held - set(ours):
        raise DicomwebError(
            f"{pacs.host}: derived series {series} holds {len(held - set(ours))} instances this run does not "
            f"make: its source series changed after it was stored; delete the derived series on the server, "
            "then run the same command again"
        )
    missing = [p for uid, p in ours.items() if uid not in held]
    if len(missing) < len(paths):
        progress(f"denoise: {pacs.host} already holds {len(paths) - len(missing)} of the {len(paths)} instances")
    for start in range(0, len(missing), STORE_BATCH):
        batch = missing[start : start + STORE_BATCH]
        try:
            pacs.store([pydicom.dcmread(p) for p in batch], study)
        except DicomwebError as exc:
            raise DicomwebError(f"{exc}; {_incomplete(pacs, study, series, len(paths))}") from None
        progress(f"denoise: stored {len(paths) - len(missing) + start + len(batch)}/{len(paths)} instances")
    if set(ours) - set(pacs.instances(study, series)):  # a server may drop an instance and still answer success
        raise DicomwebError(
            f"{pacs.host}: after storing every instance, {_incomplete(pacs, study, series, len(paths))}"
        )
    progress(f"denoise: derived series {series} of study {study} stored on {where}")


def _incomplete(pacs: Pacs, study: str, series: str, total: int) -> str:
    """How many instances of the series the server holds, and what to do about the rest."""
    try:
        held = str(len(pacs.instances(study, series)))
    except DicomwebError:
        held = "an unknown number"
    return (
        f"{held} of the {total} instances of derived series {series} are on the server: run the same command "
        "again to store the rest"
    )
