"""Write one CT Image Storage slice the way a scanner would, with pydicom's own helpers.

Everything downstream (ingestion, HU conversion, pairing by z) is tested against
these files, so they carry the attributes real scanners set, including the type 2
ones that may be empty, and both pixel representations met in clinics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.uid import CTImageStorage, generate_uid
from pydicom.valuerep import DSfloat

from ctdenoise.dicomio.derived import ct_file_meta

STUDY_DATE, STUDY_TIME = "20240101", "120000"
"""Fixed acquisition date and time: the files must be byte-identical for a seed."""

_DTYPES = {"uint16": np.uint16, "int16": np.int16}
_DEFAULT_INTERCEPT = {"uint16": -1024.0, "int16": 0.0}


@dataclass(frozen=True)
class SeriesInfo:
    """Identifiers shared by every slice of one series."""

    patient_id: str
    patient_name: str
    study_uid: str
    series_uid: str
    series_number: int
    series_description: str
    frame_of_reference_uid: str


def write_ct_slice(
    path: Path,
    hu: np.ndarray,
    series: SeriesInfo,
    *,
    instance_number: int,
    z_mm: float,
    pixel_spacing_mm: float,
    slice_thickness_mm: float,
    kvp: float = 120.0,
    representation: str = "uint16",
    slope: float = 1.0,
    intercept: float | None = None,
    sop_uid: str | None = None,
    extra: dict | None = None,
) -> pydicom.Dataset:
    """Write `hu` as an explicit-VR little-endian CT slice at `path`; return the dataset.

    Stored values are round((hu - intercept) / slope) clipped to the representation's
    range. "uint16" with intercept -1024 is what most scanners write; "int16" with
    intercept 0 is the other common convention. Without `sop_uid` the SOP Instance
    UID is derived from the series UID and instance number, so it is reproducible.
    """
    if representation not in _DTYPES:
        raise ValueError(f"representation must be one of {sorted(_DTYPES)}, got {representation!r}")
    if intercept is None:
        intercept = _DEFAULT_INTERCEPT[representation]
    sop_uid = sop_uid or generate_uid(entropy_srcs=[series.series_uid, str(instance_number)])
    ds = pydicom.Dataset()
    ds.file_meta = ct_file_meta(sop_uid)
    _set_identity(ds, series, sop_uid, instance_number)
    _set_geometry(ds, hu.shape, z_mm, pixel_spacing_mm, slice_thickness_mm)
    ds.KVP = _ds(kvp)
    ds.set_pixel_data(_stored(hu, representation, slope, intercept), "MONOCHROME2", 16, generate_instance_uid=False)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = _ds(intercept), _ds(slope), "HU"
    ds.WindowCenter, ds.WindowWidth = _ds(40), _ds(400)
    for keyword, value in (extra or {}).items():
        if tag_for_keyword(keyword) is None:
            raise ValueError(f"extra: {keyword!r} is not a DICOM keyword")
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return ds


def _set_identity(ds: pydicom.Dataset, series: SeriesInfo, sop_uid: str, instance_number: int) -> None:
    """Patient, study, series, equipment and SOP common attributes."""
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality, ds.Manufacturer = "CT", "ctdenoise simulator"
    ds.PatientID, ds.PatientName = series.patient_id, series.patient_name
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = series.study_uid, "1", ""
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = STUDY_DATE, STUDY_TIME, ""
    ds.ContentDate, ds.ContentTime = STUDY_DATE, STUDY_TIME
    ds.SeriesInstanceUID, ds.SeriesNumber = series.series_uid, series.series_number
    ds.SeriesDescription = series.series_description
    ds.FrameOfReferenceUID = series.frame_of_reference_uid
    ds.InstanceNumber, ds.AcquisitionNumber = instance_number, 1


def _set_geometry(
    ds: pydicom.Dataset, shape: tuple[int, ...], z_mm: float, pixel_spacing_mm: float, slice_thickness_mm: float
) -> None:
    """Image plane attributes: an axial, head-first-supine slice centred on the isocentre."""
    rows, cols = shape
    ds.PositionReferenceIndicator, ds.PatientPosition = "", "HFS"
    ds.ImagePositionPatient = [
        _ds(-(cols - 1) / 2 * pixel_spacing_mm),
        _ds(-(rows - 1) / 2 * pixel_spacing_mm),
        _ds(z_mm),
    ]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = _ds(z_mm)
    ds.PixelSpacing = [_ds(pixel_spacing_mm), _ds(pixel_spacing_mm)]
    ds.SliceThickness = _ds(slice_thickness_mm)


def _stored(hu: np.ndarray, representation: str, slope: float, intercept: float) -> np.ndarray:
    """HU to stored pixel values: the inverse modality LUT, clipped to the integer range."""
    dtype = _DTYPES[representation]
    info = np.iinfo(dtype)
    values = np.round((np.asarray(hu, dtype=np.float64) - intercept) / slope)
    return np.clip(values, info.min, info.max).astype(dtype)


def _ds(value: float) -> DSfloat:
    """A Decimal String no longer than DICOM's 16 characters."""
    return DSfloat(value, auto_format=True)
