"""`ctdenoise pull`: the CT series a QIDO-RS search finds on a PACS, copied into the data
layout `run --data` reads, DATA/<patient>/<LDCT|NDCT>/ (docs/design.md, "A PACS on either side: DICOMweb (`pull`,
`denoise`)").

Which dose a series is comes from one of its attributes (SeriesDescription by default)
matched against a low-dose and a normal-dose pattern; a series that matches neither or both,
or is not CT, or names no patient, or is derived, is skipped with a line saying why (by
series UID: progress lines never carry tag values). The patient folder is a keyed pseudonym
of the PatientID, or with `keep_patient_id` the PatientID made safe as a name
(`ctdenoise.app.patients`), and each file is named by a digest of its SOP Instance UID, so
nothing identifying reaches a name. Files are written under a hidden name and
renamed when whole: a pull that stopped is resumed by the same command, which reads only the
instances not yet there.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ctdenoise.app.patients import PatientFolders
from ctdenoise.components.dicom_example_gen.layout import Layout
from ctdenoise.dicomweb_io.address import parse
from ctdenoise.storage.publish import running

if TYPE_CHECKING:  # the client imports pydicom and requests: only `pull` itself needs them, not `--help`
    from ctdenoise.dicomweb_io.client import Pacs, SeriesEntry

LDCT_PATTERN = r"(?i)\b(ldct|low[- ]?dose|quarter[- ]?dose)\b"
NDCT_PATTERN = r"(?i)\b(ndct|full[- ]?dose|normal[- ]?dose|routine[- ]?dose)\b"
DOSE_ATTRIBUTE = "SeriesDescription"
_NAME_DIGEST_HEX = 20
_PARTIAL = ".partial-"
_PROGRESS_EVERY = 25


class PullError(ValueError):
    """A pull that cannot start (bad pattern, attribute or destination); the message is one line."""


@dataclass
class PullReport:
    """What a pull found and did: instances copied now, instances already there, series skipped and why."""

    patients: set[str] = field(default_factory=set)
    series: int = 0
    copied: int = 0
    present: int = 0
    skipped: list[str] = field(default_factory=list)


def pull(
    source: str,
    out: Path,
    *,
    patient: str = "",
    attribute: str = DOSE_ATTRIBUTE,
    ldct: str = LDCT_PATTERN,
    ndct: str = NDCT_PATTERN,
    keep_patient_id: bool = False,
    progress: Callable[[str], None] | None = print,
) -> PullReport:
    """Copy the CT series under `source` (a service, a study or a series; `patient` narrows
    it to one PatientID) into `out`, low-dose and normal-dose series by the patterns, each
    patient's under a pseudonym (or, with `keep_patient_id`, its PatientID)."""
    from pydicom.datadict import tag_for_keyword

    from ctdenoise.dicomweb_io.client import Pacs

    say = progress or (lambda _line: None)
    address = parse(source)
    if tag_for_keyword(attribute) is None:
        raise PullError(f"--match-attribute {attribute}: not a DICOM keyword (e.g. SeriesDescription)")
    patterns = {
        dose: _compiled(flag, text) for dose, flag, text in (("ldct", "--ldct", ldct), ("ndct", "--ndct", ndct))
    }
    pacs = Pacs(address)
    entries = pacs.series(
        [attribute, "PatientID", "Modality"], study=address.study, series=address.series, patient=patient
    )
    say(f"pull: {len(entries)} series found on {pacs.host}")
    layout, report, patients = Layout(), PullReport(), PatientFolders(out, keep_patient_id)
    folders = {"ldct": layout.ldct_dirs[0], "ndct": layout.ndct_dirs[0]}
    for index, entry in enumerate(entries, 1):
        dose, reason = _dose(entry, attribute, patterns)
        folder = None
        if dose:
            folder, reason = patients.folder(str(entry.attributes.get("PatientID", "") or ""))
        if dose is None or folder is None:
            report.skipped.append(f"series {entry.series}: {reason}")
            say(f"pull: series {index}/{len(entries)} skipped: {report.skipped[-1]}")
            continue
        target = out / folder / folders[dose]
        copied, present, derived = _copy_series(pacs, entry, target, say)
        if derived:
            report.skipped.append(f"series {entry.series}: derived ({derived}), not a scan")
            say(f"pull: series {index}/{len(entries)} skipped: {report.skipped[-1]}")
            continue
        report.patients.add(folder)
        report.series, report.copied, report.present = (
            report.series + 1,
            report.copied + copied,
            report.present + present,
        )
        say(f"pull: series {index}/{len(entries)}: {copied} instances copied, {present} already there, into {target}")
    say(
        f"pull: {report.copied} instances copied and {report.present} already there, {report.series} series "
        f"of {len(report.patients)} patients in {out}; {len(report.skipped)} series skipped"
    )
    return report


def _compiled(flag: str, text: str) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as exc:
        raise PullError(f"{flag} {text}: not a regular expression ({exc})") from None


def _dose(entry: SeriesEntry, attribute: str, patterns: dict[str, re.Pattern]) -> tuple[str | None, str]:
    """Which dose folder the series goes to, or None and why not."""
    if entry.attributes.get("Modality") != "CT":
        return None, "not CT"
    value = str(entry.attributes.get(attribute, "") or "")
    doses = [dose for dose, pattern in patterns.items() if pattern.search(value)]
    if len(doses) != 1:
        return None, f"its {attribute} matches {'both' if doses else 'neither'} of the dose patterns"
    return doses[0], ""


def _copy_series(pacs: Pacs, entry: SeriesEntry, target: Path, progress: Callable[[str], None]) -> tuple[int, int, str]:
    """Every instance of the series not yet in `target`, written whole or not at all (the
    hidden half-written files of a pull that was killed are removed first): (copied, already
    there, ""). A derived series, such as ctdenoise's own output, is not training data: the
    copy stops at the first derived instance it reads, the folder goes again if this call
    made it and it is still empty, and the third item says why."""
    from ctdenoise.dicomio.derived import derived_reason

    new_folder = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target)
    copied = present = 0
    instances = pacs.instances(entry.study, entry.series)
    for instance in instances:
        path = target / f"{hashlib.sha256(instance.encode()).hexdigest()[:_NAME_DIGEST_HEX]}.dcm"
        if path.exists():
            present += 1
            continue
        dataset = pacs.retrieve(entry.study, entry.series, instance)
        derived = derived_reason(dataset)
        if derived:
            if new_folder and not any(target.iterdir()):
                target.rmdir()
            return copied, present, derived
        partial = target / f".{path.name}{_PARTIAL}{os.getpid()}"
        dataset.save_as(partial)
        os.replace(partial, path)
        copied += 1
        if copied % _PROGRESS_EVERY == 0:
            progress(f"pull: {copied + present}/{len(instances)} instances of series {entry.series}")
    return copied, present, ""


def _remove_abandoned(target: Path) -> None:
    """The half-written files of pulls that were killed (their process is gone) or of this
    one: another pull into the same folder, still running, keeps its own."""
    for partial in target.glob(f".*{_PARTIAL}*"):
        pid = partial.name.rpartition(_PARTIAL)[2]
        if not pid.isdigit() or int(pid) == os.getpid() or not running(int(pid)):
            partial.unlink(missing_ok=True)
