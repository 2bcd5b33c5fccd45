"""DICOM input as a hostile-input probe writes it: garbage rescale, headers that declare huge
images, non-axial and tilted planes, one patient's files under a second patient folder, and
files that vanish while they are read (docs/design.md, "HU conversion and the model window", design, "Ingestion
mechanics"). Every file is real, written
with pydicom."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from ctdenoise.components.dicom_example_gen.component import DicomExampleGen
from ctdenoise.components.dicom_example_gen.executor import ReadSlices, ReportFn, UnreadableInput
from ctdenoise.components.dicom_example_gen.layout import Layout, scan
from ctdenoise.components.dicom_example_gen.pairing import FileIdentity, cross_patient_duplicates
from ctdenoise.dicomio.reader import DicomRejected, ReadOptions, read_ct_slices
from tests import dicom_factory as f
from tests.limits import HANG_S
from tests.pipeline_helpers import ingest

REPO = Path(__file__).resolve().parents[1]
MEMORY_BOUND_BYTES = 2 * 2**30
PEAK_BYTES = 256 * 2**20
"""What reading a refused header may reach: the interpreter with pydicom and NumPy, no pixels."""
"""Address space the reader gets for a header that declares gigabytes: today's 65535² RLE took 8.5 GB."""


def rejection(path: Path, options: ReadOptions = ReadOptions()) -> str:
    with pytest.raises(DicomRejected) as info:
        read_ct_slices(path, path.name, options)
    return info.value.reason


# --- 1. garbage rescale ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "representation, intercept, edits, reason",
    [
        ("int16", 0.0, {"RescaleIntercept": -1e6, "RescaleSlope": 1e-9}, "beyond the int16 range"),
        ("uint16", -32768.0, {"PixelRepresentation": 1}, "PixelRepresentation"),  # unsigned data read as signed
        ("int16", 0.0, {"RescaleSlope": -1}, "RescaleSlope is negative"),  # air would read +1000 HU
        ("int16", 0.0, {"RescaleIntercept": -10000}, "blank slice: no pixel above -1024 HU"),
        ("int16", 0.0, {"RescaleSlope": 1e-9}, "blank slice: every stored value reads"),
    ],
    ids=["intercept-1e6", "signed-unsigned", "slope-1", "all-below-floor", "slope-erases"],
)
def test_rescale_that_gives_no_plausible_ct_is_rejected(tmp_path, representation, intercept, edits, reason):
    path = f.write_slice(
        tmp_path,
        "P1",
        "LDCT",
        1,
        0.0,
        representation=representation,
        intercept=intercept,
        extra={"PhotometricInterpretation": "MONOCHROME1"},
    )
    assert read_ct_slices(path, "x")[0].hu.max() > 800  # the file as written is ordinary CT (bone at 900 HU)
    assert reason in rejection(f.edit(path, **edits))


# --- 2. memory bombs ------------------------------------------------------------------------------


def _read_in_bounded_process(path: Path) -> tuple[str, int]:
    """read_ct_slices in a child whose address space is MEMORY_BOUND_BYTES: its outcome line and
    its peak resident memory in bytes. The peak is the new program's own (VmHWM), not getrusage's
    ru_maxrss, which Linux carries across exec from the forking process: forked from a pytest
    worker holding TensorFlow, it read 2.28 GB before this child had read a byte."""
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({MEMORY_BOUND_BYTES}, {MEMORY_BOUND_BYTES}))
        from ctdenoise.dicomio.reader import DicomRejected, read_ct_slices
        try:
            read_ct_slices({str(path)!r}, "bomb.dcm")
            print("accepted")
        except DicomRejected as exc:
            print("rejected:", exc.reason)
        print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
    """)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG_S,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcome, peak_kib = result.stdout.strip().splitlines()[-2:]
    return outcome, int(peak_kib) * 1024


@pytest.mark.parametrize(
    "compressed, side, frames",
    [(True, 65535, 1), (False, 30000, 1), (True, 4096, 2000)],
    ids=["rle-65535", "native-30000", "rle-multiframe-4096x2000"],
)
def test_a_header_declaring_a_huge_image_is_refused_before_any_pixel_buffer(tmp_path, compressed, side, frames):
    path = f.write_slice(tmp_path, "P1", "LDCT", 1, 0.0)
    if compressed:
        expected = read_ct_slices(path, "x")[0].hu
        f.compress(path, RLELossless)
        np.testing.assert_array_equal(read_ct_slices(path, "x")[0].hu, expected)  # valid RLE decodes
    f.edit(path, Rows=side, Columns=side, NumberOfFrames=frames)
    assert path.stat().st_size < 16 * 2**10
    outcome, peak = _read_in_bounded_process(path)
    assert outcome.startswith(f"rejected: declared size too large: {side} × {side} × {frames} frame(s)"), outcome
    assert peak < PEAK_BYTES  # the cap only makes a large allocation fail; the peak shows none was tried


@pytest.mark.parametrize(
    "rows, reason",
    [
        (64, "truncated or unreadable pixel data (2048 bytes, the header declares 4096)"),
        (16, "pixel data longer than declared (2048 bytes, the header declares 1024)"),
    ],
)
def test_native_pixel_data_must_have_the_declared_length(tmp_path, rows, reason):
    path = f.write_slice(tmp_path, "P1", "LDCT", 1, 0.0)  # 32 × 32 int16: 2048 bytes
    assert rejection(f.edit(path, Rows=rows)) == reason


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_J2KR.dcm"])
def test_clinical_ct_reads_within_the_default_bound_and_a_lower_bound_refuses_it(name):
    path = Path(f.pydicom_file(name))
    ds = pydicom.dcmread(path)
    [record] = read_ct_slices(path, name)
    assert record.hu.shape == (ds.Rows, ds.Columns)
    smaller = ReadOptions(max_frame_pixels=ds.Rows * ds.Columns - 1)
    assert rejection(path, smaller).startswith("declared size too large")
    assert rejection(path, ReadOptions(max_decoded_bytes=ds.Rows * ds.Columns)).startswith("declared size too large")


# --- 3. orientation -------------------------------------------------------------------------------

TILT = math.radians(20)
TILTED = "gantry-tilted slice (20.0° from axial): tilted series are read only when allowed"


@pytest.mark.parametrize(
    "extra, reason",
    [
        (
            {"ImageOrientationPatient": [0, 1, 0, 0, 0, -1]},
            "not an axial slice: its plane is 90.0° from axial (ImageOrientationPatient)",
        ),
        ({"ImageOrientationPatient": [1, 0, 0, 0, math.cos(TILT), -math.sin(TILT)], "GantryDetectorTilt": 20}, TILTED),
        ({"GantryDetectorTilt": -20}, TILTED),  # an axial plane, the tilt only recorded
        (
            {
                "ImageOrientationPatient": [math.cos(TILT), 0, math.sin(TILT), 0, 1, 0]
            },  # turned about y: no gantry tilts so
            "not an axial slice: its plane is 20.0° from axial (ImageOrientationPatient)",
        ),
    ],
    ids=["sagittal", "tilted-20", "tilt-recorded", "oblique-about-y"],
)
def test_only_axial_slices_are_read_and_tilted_ones_only_when_allowed(tmp_path, extra, reason):
    path = f.write_slice(tmp_path, "P1", "NDCT", 1, 0.0, extra=extra)
    assert rejection(path) == reason
    tilted_ok = ReadOptions(allow_tilt=True)
    if reason == TILTED:
        assert read_ct_slices(path, "x", tilted_ok)[0].z == pytest.approx(0.0)
    else:
        assert rejection(path, tilted_ok) == reason


def test_the_axial_tolerance_is_a_parameter_of_the_reader_and_of_ingestion(tmp_path):
    lean = math.radians(0.5)
    path = f.write_slice(
        tmp_path, "P1", "LDCT", 1, 0.0, extra={"ImageOrientationPatient": [1, 0, 0, 0, math.cos(lean), math.sin(lean)]}
    )
    assert len(read_ct_slices(path, "x")) == 1  # within the default 1°
    strict = ReadOptions(axial_tolerance_deg=0.1)
    assert rejection(path, strict).startswith("gantry-tilted slice (0.5° from axial)")
    [found] = scan(str(tmp_path), Layout()).found
    [event] = list(ReadSlices(str(tmp_path), strict).process(found))
    assert event.tag == "events" and event.value[0] == "rejected"
    component = DicomExampleGen(data_root=str(tmp_path), read_options=strict)
    assert ReadOptions.from_json(component.exec_properties["read_options"]) == strict


# --- 4. one patient's files under two patient folders ----------------------------------------------


def _patient(root: Path, patient: str, zs: list[float]) -> list[Path]:
    return [f.write_slice(root, patient, dose, i, z) for dose in ("LDCT", "NDCT") for i, z in enumerate(zs)]


def _hard_linked_copy(root: Path, source: str, copy: str) -> list[Path]:
    links = []
    for path in sorted((root / source).rglob("*.dcm")):
        link = root / copy / path.relative_to(root / source)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, link)
        links.append(link)
    return links


def test_links_copies_and_reused_instance_uids_across_patients_are_found(tmp_path):
    originals = _patient(tmp_path, "P1", [0.0, 3.0])
    links = _hard_linked_copy(tmp_path, "P1", "P1-again")
    copy = tmp_path / "P3" / "LDCT" / "copy.dcm"
    copy.parent.mkdir(parents=True)
    shutil.copyfile(originals[1], copy)
    reused = f.write_slice(
        tmp_path, "P2", "LDCT", 7, 0.0, hu=f.body_hu(seed=9), sop_uid=pydicom.dcmread(originals[0]).SOPInstanceUID
    )
    own = f.write_slice(tmp_path, "P2", "NDCT", 7, 0.0)
    rel = {path: path.relative_to(tmp_path).as_posix() for path in [*originals, *links, copy, reused, own]}
    identities = []
    for path, name in rel.items():
        [record] = read_ct_slices(path, name)
        identities.append(FileIdentity(name, name.split("/")[0], record.file_id, record.instance))
    expected = {
        rel[link]: f"duplicate across patients: the same file as {rel[original]}"
        for link, original in zip(links, originals, strict=True)
    }
    expected[rel[copy]] = f"duplicate across patients: the same SOPInstanceUID as {rel[originals[1]]}"
    expected[rel[reused]] = f"duplicate across patients: the same SOPInstanceUID as {rel[originals[0]]}"
    assert cross_patient_duplicates(reversed(identities)) == expected


def test_a_hard_linked_copy_of_a_patient_folder_is_rejected_at_ingestion(tmp_path):
    root = tmp_path / "data"
    _patient(root, "P1", [0.0, 3.0, 6.0])
    _patient(root, "P2", [0.0, 3.0])
    links = [link.relative_to(root).as_posix() for link in _hard_linked_copy(root, "P1", "P1-again")]
    report = ingest(root, tmp_path / "out")
    assert report["accepted"] == 10 and report["pairs"] == 5
    first = [link.replace("P1-again/", "P1/", 1) for link in links]
    assert report["rejected"] == [
        {"path": link, "reason": f"duplicate across patients: the same file as {original}"}
        for link, original in zip(links, first, strict=True)
    ]


# --- 6. files that vanish while the root is read ---------------------------------------------------


def test_a_file_that_vanished_after_listing_fails_the_run_in_one_line(tmp_path):
    paths = _patient(tmp_path, "P1", [0.0])
    found = scan(str(tmp_path), Layout()).found
    paths[0].unlink()
    events = [
        out.value
        for file in found
        for out in ReadSlices(str(tmp_path)).process(file)
        if getattr(out, "tag", None) == "events"
    ]
    vanished = {"path": "P1/LDCT/000.dcm", "reason": "vanished during ingestion (listed, then not found)"}
    assert events == [("unreadable", vanished)]
    report_fn = ReportFn()
    report = report_fn.extract_output(report_fn.add_input(report_fn.create_accumulator(), events[0]))
    assert report["unreadable"] == [vanished] and not report["rejected"]
    message = str(UnreadableInput(report["unreadable"]))
    assert "\n" not in message
    assert message.startswith("1 listed file(s) could not be read, e.g. P1/LDCT/000.dcm: vanished during ingestion")
