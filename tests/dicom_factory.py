"""Real DICOM files of the kinds met in clinics, written with pydicom for the tests.

Uncompressed slices come from the simulator's writer; this module adds what a data
root in the wild also holds: compressed transfer syntaxes, enhanced multi-frame CT,
non-CT objects, files without pixel data, truncated files and junk.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import imagecodecs
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

from ctdenoise.simulator.dicom_writer import SeriesInfo, write_ct_slice

DISTINCTIVE_NAME = "Quuxbridge^Zephyrine"
"""A PatientName that must never appear in any output (PHI test)."""


def pydicom_file(name: str) -> str:
    """The path of one of the files pydicom ships for its own tests (real, often clinical DICOM)."""
    path = get_testdata_file(name)
    if not isinstance(path, str):
        raise FileNotFoundError(f"pydicom ships no test file {name}")
    return path


def series(patient: str, dose: str, name: str = "") -> SeriesInfo:
    return SeriesInfo(
        patient_id=patient,
        patient_name=name or f"SIM^{patient}",
        study_uid=generate_uid(entropy_srcs=[patient]),
        series_uid=generate_uid(entropy_srcs=[patient, dose]),
        series_number=1 if dose == "LDCT" else 2,
        series_description=dose,
        frame_of_reference_uid=generate_uid(entropy_srcs=[patient, "for"]),
    )


def body_hu(size: int = 32, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """A small air + water-disc + bone image in HU (air dominates the corners)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    hu = np.full((size, size), -1000.0)
    hu[xx**2 + yy**2 < (0.4 * size) ** 2] = 40.0
    hu[xx**2 + (yy - 0.2 * size) ** 2 < (0.08 * size) ** 2] = 900.0
    return hu + rng.normal(0, 10, hu.shape) + shift


def write_slice(
    root: Path, patient: str, dose: str, index: int, z: float, *, name: str = "", hu: np.ndarray | None = None, **kwargs
) -> Path:
    """One uncompressed CT slice at `root/patient/dose/`."""
    path = root / patient / dose / f"{index:03d}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    image = body_hu(seed=zlib.crc32(f"{patient}/{dose}/{index}".encode())) if hu is None else hu
    write_ct_slice(
        path,
        image,
        series(patient, dose, name),
        instance_number=index,
        z_mm=z,
        pixel_spacing_mm=0.8,
        slice_thickness_mm=3.0,
        **kwargs,
    )
    return path


def compress(path: Path, syntax: pydicom.uid.UID) -> Path:
    """Re-encode a file in place with a lossless compressed transfer syntax."""
    ds = pydicom.dcmread(path)
    if syntax == JPEGLosslessSV1:  # no pydicom encoder: libjpeg-turbo (imagecodecs) writes SOF3 streams
        frame = imagecodecs.jpeg8_encode(ds.pixel_array, lossless=True, bitspersample=ds.BitsStored, predictor=1)
        ds.PixelData = encapsulate([bytes(frame)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax
    else:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


COMPRESSIONS = {
    "jpeg2000": JPEG2000Lossless,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "jpeg-lossless": JPEGLosslessSV1,
}


def write_enhanced_ct(
    path: Path, frames_hu: list[np.ndarray], zs: list[float], slopes: list[float], intercepts: list[float]
) -> Path:
    """An Enhanced CT multi-frame object with per-frame rescale and position."""
    stored = np.stack([np.round((h - b) / m) for h, m, b in zip(frames_hu, slopes, intercepts, strict=True)]).astype(
        np.int16
    )
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "CT", path.parts[-3], "ENH^CT"
    ds.set_pixel_data(stored, "MONOCHROME2", 16, generate_instance_uid=False)
    ds.NumberOfFrames = len(frames_hu)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.8, 0.8], 3.0
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [
        _frame_group(z, m, b) for z, m, b in zip(zs, slopes, intercepts, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _frame_group(z: float, slope: float, intercept: float) -> Dataset:
    position, transform, group = Dataset(), Dataset(), Dataset()
    position.ImagePositionPatient = [0.0, 0.0, z]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = slope, intercept, "HU"
    group.PlanePositionSequence = [position]
    group.PixelValueTransformationSequence = [transform]
    return group


def make_non_ct(path: Path) -> Path:
    """A valid MR image: DICOM, but not CT."""
    ds = pydicom.dcmread(path)
    ds.Modality, ds.SOPClassUID = "MR", MRImageStorage
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.save_as(path, enforce_file_format=True)
    return path


def strip_pixels(path: Path) -> Path:
    """A CT header without pixel data."""
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path, enforce_file_format=True)
    return path


def edit(path: Path, **elements) -> Path:
    """Set header elements of a file in place (keyword=value), its pixel data left as stored."""
    ds = pydicom.dcmread(path)
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def truncate(path: Path, keep_fraction: float = 0.6) -> Path:
    """Cut a file short inside its pixel data, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    return path
