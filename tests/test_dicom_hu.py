"""HU conversion equals pydicom's modality LUT on real files of every kind we accept."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from ctdenoise.contract.hu import CT_FLOOR_HU
from ctdenoise.dicomio.reader import DicomRejected, read_ct_slices
from tests import dicom_factory as f


def pydicom_hu(path) -> np.ndarray:
    """pydicom's modality LUT, rounded; values below the CT scale read as its floor (-1024)."""
    ds = pydicom.dcmread(path)
    return np.maximum(np.rint(apply_modality_lut(ds.pixel_array, ds)), CT_FLOOR_HU)


@pytest.mark.parametrize(
    "representation,slope,intercept",
    [
        ("uint16", 1.0, -1024.0),
        ("int16", 1.0, 0.0),
        ("int16", 0.5, -1000.0),
        ("uint16", 2.0, -2048.0),
    ],
)
def test_hu_matches_pydicom_modality_lut(tmp_path, representation, slope, intercept):
    path = f.write_slice(
        tmp_path, "P1", "LDCT", 1, 10.0, representation=representation, slope=slope, intercept=intercept
    )
    [record] = read_ct_slices(path, "P1/LDCT/001.dcm")
    assert record.hu.dtype == np.int16
    np.testing.assert_array_equal(record.hu, pydicom_hu(path))
    assert record.z == pytest.approx(10.0) and record.pixel_spacing_mm == pytest.approx(0.8)
    assert record.slice_thickness_mm == pytest.approx(3.0) and record.kvp == pytest.approx(120.0)


def test_padding_value_and_values_below_ct_scale_become_the_floor(tmp_path):
    hu = f.body_hu()
    hu[:4, :4] = -3024  # outside the reconstruction circle, as many scanners write it
    path = f.write_slice(
        tmp_path, "P1", "LDCT", 1, 0.0, hu=hu, representation="int16", extra={"PixelPaddingValue": -2000}
    )
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array.copy()
    raw[4:6, 4:6] = -2000
    ds.PixelData = raw.tobytes()
    ds.save_as(path)
    [record] = read_ct_slices(path, "x")
    assert (record.hu[:4, :4] == CT_FLOOR_HU).all() and (record.hu[4:6, 4:6] == CT_FLOOR_HU).all()
    raw_hu = np.rint(apply_modality_lut(raw, ds))
    assert (raw_hu[4:6, 4:6] == -2000).all()  # pydicom alone would read the padding as -2000 HU
    padding = raw == -2000
    np.testing.assert_array_equal(record.hu[~padding], pydicom_hu(path)[~padding])


@pytest.mark.parametrize("name", sorted(f.COMPRESSIONS))
def test_compressed_transfer_syntaxes_decode_to_the_same_hu(tmp_path, name):
    original = f.write_slice(tmp_path, "P1", "LDCT", 1, 0.0)
    expected = read_ct_slices(original, "x")[0].hu
    compressed = f.compress(original, f.COMPRESSIONS[name])
    assert pydicom.dcmread(compressed).file_meta.TransferSyntaxUID == f.COMPRESSIONS[name]
    np.testing.assert_array_equal(read_ct_slices(compressed, "x")[0].hu, expected)


def test_real_world_jpeg2000_ct_matches_pydicom():
    path = f.pydicom_file("693_J2KI.dcm")  # a clinical JPEG 2000 CT shipped with pydicom
    [record] = read_ct_slices(path, "x")
    np.testing.assert_array_equal(record.hu, pydicom_hu(path))


def test_enhanced_multiframe_uses_per_frame_rescale_and_position(tmp_path):
    frames = [f.body_hu(seed=i) for i in range(3)]
    path = f.write_enhanced_ct(
        tmp_path / "P1" / "LDCT" / "enh.dcm",
        frames,
        zs=[0.0, 3.0, 6.0],
        slopes=[1.0, 0.5, 2.0],
        intercepts=[-1024.0, -1000.0, 0.0],
    )
    records = read_ct_slices(path, "P1/LDCT/enh.dcm")
    assert [r.z for r in records] == [0.0, 3.0, 6.0]
    assert [r.frame for r in records] == [0, 1, 2]
    ds = pydicom.dcmread(path)
    for i, record in enumerate(records):
        transform = ds.PerFrameFunctionalGroupsSequence[i].PixelValueTransformationSequence[0]
        expected = np.rint(apply_modality_lut(ds.pixel_array[i], transform))
        np.testing.assert_array_equal(record.hu, np.maximum(expected, CT_FLOOR_HU))
        assert record.pixel_spacing_mm == pytest.approx(0.8)


def test_a_storage_failure_is_an_error_not_a_rejection(tmp_path):
    """A rejected file is listed and left out of the cached examples; a file the storage could
    not read (here a folder where the file was listed) must fail the read instead."""
    unreadable = tmp_path / "0001.dcm"
    unreadable.mkdir()
    with pytest.raises(IsADirectoryError):
        read_ct_slices(unreadable, "x")


@pytest.mark.parametrize(
    "damage,reason",
    [
        (f.make_non_ct, "not CT (modality MR)"),
        (f.strip_pixels, "no pixel data"),
        (f.truncate, "pixel data"),
        (lambda p: (p.write_bytes(b"hello, not dicom"), p)[1], "not a DICOM file"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(tmp_path, damage, reason):
    path = damage(f.write_slice(tmp_path, "P1", "LDCT", 1, 0.0))
    with pytest.raises(DicomRejected) as info:
        read_ct_slices(path, "x")
    assert reason in info.value.reason
