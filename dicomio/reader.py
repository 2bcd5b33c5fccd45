"""Read CT DICOM files into Hounsfield units with pydicom's own modality LUT rules.

Shared by the ingestion component, the simulator's ``--from`` option and ``denoise``.
`read_ct_slices` parses only the tags needed for HU and geometry (``specific_tags``): it is
faster, and protected health information such as PatientName is never even decoded.
`read_ct_file` parses the whole header once, for writing a derived series from it.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut

from contract.hu import CT_FLOOR_HU
from storage.files import open_binary

CT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
}

logging.getLogger("pydicom").setLevel(logging.ERROR)

_TAGS = [
    "Modality", "SOPClassUID", "SOPInstanceUID", "Rows", "Columns", "SamplesPerPixel",
    "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence",
    "PixelPaddingValue", "PixelPaddingRangeLimit", "ImagePositionPatient",
    "SliceLocation", "PixelSpacing", "SliceThickness", "KVP",
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "PixelData",
]


class DicomRejected(Exception):
    """A file that cannot become CT slices; `reason` is one line, free of tag values that could carry PHI."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SliceRecord:
    """One CT slice in HU (int16) with the geometry needed for pairing and metadata features."""

    rel_path: str
    hu: np.ndarray
    z: float | None
    frame: int | None
    pixel_spacing_mm: float | None
    slice_thickness_mm: float | None
    kvp: float | None
    instance: str = ""
    """SOPInstanceUID of the file: two files with one UID are one instance stored twice."""


@dataclass(frozen=True)
class CtFile:
    """The slices of one file and its whole header (pixel data removed)."""

    slices: list[SliceRecord]
    header: Dataset


def read_ct_slices(path: str | Path, rel_path: str) -> list[SliceRecord]:
    """All slices of one CT file (one for classic CT, one per frame for enhanced CT); `path`
    may be an object-store URL.

    Raises DicomRejected with the reason when the file is not a decodable CT image.
    """
    return _read(path, rel_path, _TAGS).slices


def read_ct_file(path: str | Path, rel_path: str) -> CtFile:
    """Like `read_ct_slices`, also keeping every header element, from one parse of the file."""
    return _read(path, rel_path, None)


def _read(path: str | Path, rel_path: str, tags: list[str] | None) -> CtFile:
    with warnings.catch_warnings():  # pydicom warnings may quote element values (PHI)
        warnings.simplefilter("ignore")
        ds = _read_dataset(path, tags)
        _check_is_ct_image(ds)
        raw = _decode_pixels(ds)
    frames = raw if raw.ndim == 3 else raw[np.newaxis]
    slices = [_slice_record(ds, frame, index if raw.ndim == 3 else None, rel_path)
              for index, frame in enumerate(frames)]
    del ds.PixelData
    return CtFile(slices, ds)


def to_hu(raw: np.ndarray, ds: Dataset, rescale: Dataset | None = None) -> np.ndarray:
    """Stored values → int16 HU: pydicom's modality LUT, then padding pixels to the CT floor
    (scanners write e.g. -2000 or -3024 outside the reconstruction circle; like the
    original, which set raw -2000 to 0, those read as air).

    `rescale` holds RescaleSlope/Intercept (a per-frame item of enhanced CT); the file's
    top-level values apply when it is None. Raises DicomRejected for rescale values that
    give no usable HU (non-finite, a zero slope, or values beyond what int16 holds).
    """
    source = rescale if rescale is not None else ds
    _check_rescale(source)
    hu = apply_modality_lut(raw, source).astype(np.float64)
    hu[_padding_mask(raw, ds)] = CT_FLOOR_HU
    np.maximum(hu, CT_FLOOR_HU, out=hu)
    info = np.iinfo(np.int16)
    if hu.max() > info.max:
        raise DicomRejected(f"HU up to {hu.max():.3g}, beyond the int16 range: implausible RescaleSlope/Intercept")
    return np.rint(hu).astype(np.int16)


def _check_rescale(source: Dataset) -> None:
    """A modality LUT that cannot give Hounsfield units is refused, naming the element."""
    if "ModalityLUTSequence" in source or "RescaleSlope" not in source and "RescaleIntercept" not in source:
        return
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        value = _float_or_none(source.get(keyword))
        if keyword in source and (value is None or not math.isfinite(value)):
            raise DicomRejected(f"{keyword} is not a finite number")
    if _float_or_none(source.get("RescaleSlope", 1.0)) == 0.0:
        raise DicomRejected("RescaleSlope is 0: every pixel would read the same HU")


def _read_dataset(path: str | Path, tags: list[str] | None) -> Dataset:
    try:
        with open_binary(str(path)) as f:
            return pydicom.dcmread(f, specific_tags=tags)
    except InvalidDicomError:
        raise DicomRejected("not a DICOM file (no DICM preamble)") from None
    except OSError:  # the storage failed, not the file: a rejection would drop it from the cached artifact
        raise
    except Exception as exc:  # pydicom raises many types for damaged headers
        raise DicomRejected(f"unreadable DICOM header ({type(exc).__name__})") from None


def _check_is_ct_image(ds: Dataset) -> None:
    modality = str(ds.get("Modality", "") or "")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if modality != "CT" and sop_class not in CT_SOP_CLASSES:
        raise DicomRejected(f"not CT (modality {modality or 'missing'})")
    if "PixelData" not in ds:
        raise DicomRejected("no pixel data")
    if ds.get("SamplesPerPixel", 1) != 1:
        raise DicomRejected("not a greyscale image (SamplesPerPixel > 1)")


def _decode_pixels(ds: Dataset) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        return ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        if "plugin" in str(exc).lower() or "decoder" in str(exc).lower():
            name = getattr(syntax, "name", str(syntax))
            raise DicomRejected(f"undecodable transfer syntax ({name})") from None
        raise DicomRejected(f"unreadable pixel data ({_first_line(exc)})") from None
    except Exception as exc:
        raise DicomRejected(f"truncated or unreadable pixel data ({_first_line(exc)})") from None


def _slice_record(ds: Dataset, raw: np.ndarray, frame: int | None, rel_path: str) -> SliceRecord:
    groups = frame_groups(ds, frame)
    return SliceRecord(
        rel_path=rel_path,
        hu=to_hu(raw, ds, _group_item(groups, "PixelValueTransformationSequence")),
        z=_z_position(ds, groups),
        frame=frame,
        pixel_spacing_mm=_pixel_spacing(ds, groups),
        slice_thickness_mm=_float_or_none(
            _first(ds, groups, "PixelMeasuresSequence", "SliceThickness")
        ),
        kvp=_float_or_none(_first(ds, groups, "CTXRayDetailsSequence", "KVP")),
        instance=str(ds.get("SOPInstanceUID", "") or ""),
    )


def frame_groups(ds: Dataset, frame: int | None) -> list[Dataset]:
    """Functional group items that apply to `frame`: its per-frame item first, then the shared one."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if frame is not None and per_frame and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    return groups


def _group_item(groups: list[Dataset], sequence: str) -> Dataset | None:
    for group in groups:
        seq = group.get(sequence)
        if seq:
            return seq[0]
    return None


def _first(ds: Dataset, groups: list[Dataset], sequence: str, keyword: str):
    """`keyword` from the frame's functional groups, else from the top level."""
    item = _group_item(groups, sequence)
    if item is not None and keyword in item:
        return item.get(keyword)
    return ds.get(keyword)


def _z_position(ds: Dataset, groups: list[Dataset]) -> float | None:
    """ImagePositionPatient's z, else SliceLocation; None when neither is a finite number."""
    position = _first(ds, groups, "PlanePositionSequence", "ImagePositionPatient")
    if position is not None and len(position) == 3:
        z = _float_or_none(position[2])
    else:
        z = _float_or_none(ds.get("SliceLocation"))
    return z if z is not None and math.isfinite(z) else None


def _pixel_spacing(ds: Dataset, groups: list[Dataset]) -> float | None:
    spacing = _first(ds, groups, "PixelMeasuresSequence", "PixelSpacing")
    return float(spacing[0]) if spacing else None


def _padding_mask(raw: np.ndarray, ds: Dataset) -> np.ndarray:
    """Pixels flagged by PixelPaddingValue (and PixelPaddingRangeLimit, if given)."""
    pad = ds.get("PixelPaddingValue")
    if pad is None:
        return np.zeros(raw.shape, dtype=bool)
    limit = ds.get("PixelPaddingRangeLimit", pad)
    low, high = sorted((int(pad), int(limit)))
    return (raw >= low) & (raw <= high)


def _float_or_none(value) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
