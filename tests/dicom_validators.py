"""Validators nobody here wrote, for the derived series: dicom3tools' `dciodvfy` (the IOD
checker) and dcmtk's `dcmdump` (a second, independent DICOM parser).

`.ci/run` installs Debian's `dicom3tools` and `dcmtk` when they are missing; without them
these helpers fail naming the packages.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pydicom

_UID_OR_NUMBER = re.compile(r"[0-9][0-9.]*")
_MISSING_PREFIX = "missing "
_MISSING = re.compile(r"Missing attribute .*Element=<(\w+)>")


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found: install Debian's {package} (apt-get install {package}; .ci/run does this)"
        )
    return found


def iod_errors(path: Path) -> set[str]:
    """dciodvfy's errors for one file, comparable between a source and its derived image, which
    may be of another IOD (an enhanced CT source gives classic CT Images): a missing element is
    named by the element alone, not by the module that requires it, and in other errors numbers
    and UIDs are blanked."""
    result = subprocess.run([_tool("dciodvfy", "dicom3tools"), str(path)], capture_output=True, text=True)
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    return {_MISSING_PREFIX + m[1] if (m := _MISSING.search(line)) else _UID_OR_NUMBER.sub("#", line) for line in lines}


def assert_no_new_iod_errors(source: Path, derived: Path) -> None:
    """`derived` has no dciodvfy error that `source` did not already have. An element missing
    from `derived` that `source` has nowhere, not even in a functional group, counts as the
    source's: a derived image cannot know what its source never said."""
    known = _keywords(pydicom.dcmread(source, stop_before_pixels=True))
    added = {
        error
        for error in iod_errors(derived) - iod_errors(source)
        if not error.startswith(_MISSING_PREFIX) or error.removeprefix(_MISSING_PREFIX) in known
    }
    assert not added, f"dciodvfy: {derived.name} adds {sorted(added)}"


def _keywords(ds: pydicom.Dataset) -> set[str]:
    """Every element keyword in `ds`, sequences' items included."""
    found: set[str] = set()
    for element in ds:
        found.add(element.keyword)
        if element.VR == "SQ":
            for item in element.value:
                found |= _keywords(item)
    return found


def assert_dcmtk_reads(path: Path) -> None:
    """dcmtk parses the whole file, pixel data included, without an error or a warning."""
    result = subprocess.run([_tool("dcmdump", "dcmtk"), str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and "E:" not in result.stderr and "W:" not in result.stderr, (
        f"dcmdump {path.name}: exit {result.returncode}: {result.stderr.strip()[:500]}"
    )


def assert_derived_series_valid(source_dir: Path, derived_dir: Path) -> None:
    """Every derived file in `derived_dir` against its source in `source_dir` (matched through
    its SourceImageSequence): no new dciodvfy error, and dcmtk reads it."""
    sources = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in source_dir.rglob("*.dcm")}
    for path in sorted(derived_dir.glob("*.dcm")):
        reference = pydicom.dcmread(path, stop_before_pixels=True).SourceImageSequence[0].ReferencedSOPInstanceUID
        assert_no_new_iod_errors(sources[reference], path)
        assert_dcmtk_reads(path)
