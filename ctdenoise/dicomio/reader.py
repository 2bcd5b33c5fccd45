"""Read CT DICOM files into Hounsfield units with pydicom's own modality LUT rules.

Shared by the ingestion component, the simulator's ``--from`` option and ``denoise``.
`read_ct_slices` parses only the tags needed for HU and geometry (``specific_tags``): it is
faster, and protected health information such as PatientName is never even decoded.
`read_ct_file` parses the whole header once, for writing a derived series from it.

What a file must be to give slices (docs/design.md, "HU conversion and the model window"): a CT image whose
declared pixel
data is within `ReadOptions`' size bounds (checked before any pixel buffer exists), whose
modality LUT gives plausible HU, and whose plane is axial (gantry-tilted only when allowed).
Anything else raises `DicomRejected` with a one-line reason.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, get_decoder

from ctdenoise.contract.hu import CT_FLOOR_HU
from ctdenoise.storage.files import open_binary

CT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
}

logging.getLogger("pydicom").setLevel(logging.ERROR)

_TAGS = [
    "Modality",
    "SOPClassUID",
    "SOPInstanceUID",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "NumberOfFrames",
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "ModalityLUTSequence",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "GantryDetectorTilt",
    "SliceLocation",
    "PixelSpacing",
    "SliceThickness",
    "KVP",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "PixelData",
]


MAX_FRAME_PIXELS = 4096 * 4096
"""Largest Rows × Columns read: CT is reconstructed at 512² to 2048², and 4096 is the largest
side the schema accepts (docs/design.md, "Validation and the HU gate")."""
MAX_DECODED_BYTES = 2**30
"""Largest decoded pixel data of one file, all frames together: 2048 frames of 512² int16."""
HEADER_ALLOWANCE_BYTES = 2**26
"""What a file may hold beyond its pixel data (per-frame functional groups of thousands of
frames take a few MiB): a larger file is refused before it is parsed."""
AXIAL_TOLERANCE_DEG = 1.0
"""How far a plane may lean from axial (a tilted one: from the tilt axis), and how large a
recorded GantryDetectorTilt may be, for a slice to count as axial: scanners write direction
cosines to about 1e-5."""
MAX_GANTRY_TILT_DEG = 30.0
"""Gantries tilt at most about ±30°: a plane turned further is no tilted axial slice."""
_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True)
class ReadOptions:
    """Bounds a file must meet to be read: decoded size (per frame and in all) and how close to
    axial its plane must be; `allow_tilt` also accepts gantry-tilted axial slices."""

    max_frame_pixels: int = MAX_FRAME_PIXELS
    max_decoded_bytes: int = MAX_DECODED_BYTES
    axial_tolerance_deg: float = AXIAL_TOLERANCE_DEG
    allow_tilt: bool = False

    def __post_init__(self) -> None:
        if self.max_frame_pixels < 1 or self.max_decoded_bytes < 1:
            raise ValueError(
                f"decoded size bounds must be positive, got {self.max_frame_pixels} pixels a frame "
                f"and {self.max_decoded_bytes} bytes"
            )
        if not 0 <= self.axial_tolerance_deg < 90:
            raise ValueError(f"axial tolerance must be in [0, 90) degrees, got {self.axial_tolerance_deg:g}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReadOptions:
        """The options `to_json` wrote; the defaults for an empty text."""
        return cls(**json.loads(text)) if text else cls()


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
    file_id: str = ""
    """`device:inode` of a local file ("" in an object store): two paths with one id are one
    file (a hard or symbolic link)."""


@dataclass(frozen=True)
class CtFile:
    """The slices of one file and its whole header (pixel data removed)."""

    slices: list[SliceRecord]
    header: Dataset


def read_ct_slices(path: str | Path, rel_path: str, options: ReadOptions = ReadOptions()) -> list[SliceRecord]:
    """All slices of one CT file (one for classic CT, one per frame for enhanced CT); `path`
    may be an object-store URL.

    Raises DicomRejected with the reason when the file is not a decodable CT image within
    `options`; storage failures (a file that vanished, say) raise OSError.
    """
    return _read(path, rel_path, _TAGS, options).slices


def read_ct_file(path: str | Path, rel_path: str, options: ReadOptions = ReadOptions()) -> CtFile:
    """Like `read_ct_slices`, also keeping every header element, from one parse of the file."""
    return _read(path, rel_path, None, options)


def _read(path: str | Path, rel_path: str, tags: list[str] | None, options: ReadOptions) -> CtFile:
    with warnings.catch_warnings():  # pydicom warnings may quote element values (PHI)
        warnings.simplefilter("ignore")
        ds, file_id = _read_dataset(path, tags, options)
        _check_is_ct_image(ds)
        _check_declared_size(ds, options)
        raw = _decode_pixels(ds)
    frames = raw if raw.ndim == 3 else raw[np.newaxis]
    slices = [
        _slice_record(ds, frame, index if raw.ndim == 3 else None, rel_path, file_id, options)
        for index, frame in enumerate(frames)
    ]
    del ds.PixelData
    return CtFile(slices, ds)


def to_hu(raw: np.ndarray, ds: Dataset, rescale: Dataset | None = None) -> np.ndarray:
    """Stored values → int16 HU: pydicom's modality LUT, then padding pixels to the CT floor
    (scanners write e.g. -2000 or -3024 outside the reconstruction circle; like the
    original, which set raw -2000 to 0, those read as air).

    `rescale` holds RescaleSlope/Intercept (a per-frame item of enhanced CT); the file's
    top-level values apply when it is None. Raises DicomRejected for a modality LUT that
    gives no plausible CT (`_check_rescale`, `_check_plausible_hu`), judged on the LUT's own
    output before any value is raised to the floor.
    """
    source = rescale if rescale is not None else ds
    _check_rescale(source)
    hu = apply_modality_lut(raw, source).astype(np.float64)
    padding = _padding_mask(raw, ds)
    _check_plausible_hu(raw, hu, padding)
    hu[padding] = CT_FLOOR_HU
    np.maximum(hu, CT_FLOOR_HU, out=hu)
    return np.rint(hu).astype(np.int16)


def _check_rescale(source: Dataset) -> None:
    """A modality LUT that cannot give Hounsfield units is refused, naming the element."""
    if "ModalityLUTSequence" in source or "RescaleSlope" not in source and "RescaleIntercept" not in source:
        return
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        value = _float_or_none(source.get(keyword))
        if keyword in source and (value is None or not math.isfinite(value)):
            raise DicomRejected(f"{keyword} is not a finite number")
    slope = _float_or_none(source.get("RescaleSlope", 1.0))
    if slope == 0.0:
        raise DicomRejected("RescaleSlope is 0: every pixel would read the same HU")
    if slope is not None and slope < 0:
        raise DicomRejected("RescaleSlope is negative: an inverted image, air brighter than bone")


def _check_plausible_hu(raw: np.ndarray, hu: np.ndarray, padding: np.ndarray) -> None:
    """Refuse a slice whose modality LUT output (padding pixels aside) cannot be CT: values
    beyond the int16 range HU are stored in, at either end (outside the scan circle scanners
    write a few thousand HU below air, not tens of thousands), no pixel above the CT floor (a blank slice of air), or
    differing stored values that all read one HU (a slope that erases the image). Raising
    values to the floor first would turn each of these into a blank, valid-looking slice."""
    image = hu[~padding] if padding.any() else hu
    if image.size == 0:
        raise DicomRejected("blank slice: every pixel is PixelPaddingValue")
    low, high = float(image.min()), float(image.max())
    if low < _INT16.min or high > _INT16.max:
        raise DicomRejected(
            f"HU from {low:.3g} to {high:.3g}, beyond the int16 range: "
            "implausible RescaleSlope/Intercept or PixelRepresentation"
        )
    if high <= CT_FLOOR_HU:
        raise DicomRejected(
            f"blank slice: no pixel above {CT_FLOOR_HU} HU (at most {high:.3g}): "
            "implausible RescaleIntercept or PixelRepresentation"
        )
    stored = raw[~padding] if padding.any() else raw
    if round(low) == round(high) and stored.min() != stored.max():
        raise DicomRejected(f"blank slice: every stored value reads {high:.3g} HU: implausible RescaleSlope")


def _read_dataset(path: str | Path, tags: list[str] | None, options: ReadOptions) -> tuple[Dataset, str]:
    """The parsed file and its `file_id`; a file too large for `options` is refused before it
    is parsed (parsing holds all of it in memory)."""
    with open_binary(str(path)) as f:
        f.seek(0, os.SEEK_END)
        limit = options.max_decoded_bytes + HEADER_ALLOWANCE_BYTES
        if f.tell() > limit:
            raise DicomRejected(f"file larger than {limit / 2**20:.0f} MiB: more than any image within the size bound")
        f.seek(0)
        return _parse(f, tags), _file_id(f)


def _file_id(f: BinaryIO) -> str:
    """`device:inode` of an open local file; "" for an object store's, which has no links."""
    try:
        stat = os.fstat(f.fileno())
    except (AttributeError, OSError):
        return ""
    return f"{stat.st_dev}:{stat.st_ino}"


def _parse(f: BinaryIO, tags: list[str] | None) -> Dataset:
    try:
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


def _check_declared_size(ds: Dataset, options: ReadOptions) -> None:
    """Refuse pixel data whose declared size (Rows × Columns × frames × bytes per sample) is
    beyond `options`, before any decoder allocates it (a few KB of RLE can declare 65535²),
    and native pixel data whose length is not the declared size."""
    rows, columns, bits = (_int_or_none(ds.get(keyword)) for keyword in ("Rows", "Columns", "BitsAllocated"))
    frames = _int_or_none(ds.get("NumberOfFrames") or 1)  # absent, empty or 0 mean one frame, as for pydicom
    if not (rows and columns and frames and bits) or min(rows, columns, frames, bits) < 1:
        raise DicomRejected("unreadable pixel data (Rows, Columns, NumberOfFrames or BitsAllocated not positive)")
    declared = rows * columns * frames * math.ceil(bits / 8)
    if rows * columns > options.max_frame_pixels or declared > options.max_decoded_bytes:
        raise DicomRejected(
            f"declared size too large: {rows} × {columns} × {frames} frame(s), {declared / 2**20:.0f} MiB decoded "
            f"(at most {options.max_frame_pixels} pixels a frame, {options.max_decoded_bytes / 2**20:.0f} MiB in all)"
        )
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is not None and not syntax.is_encapsulated:
        length = len(ds.PixelData)
        if length < declared:
            raise DicomRejected(f"truncated or unreadable pixel data ({length} bytes, the header declares {declared})")
        if length > declared + declared % 2:  # one byte pads an odd length
            raise DicomRejected(f"pixel data longer than declared ({length} bytes, the header declares {declared})")


def _decode_pixels(ds: Dataset) -> np.ndarray:
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if not _has_decoder(syntax):
        raise DicomRejected(f"undecodable transfer syntax ({getattr(syntax, 'name', None) or 'none given'})")
    try:
        return ds.pixel_array
    except Exception as exc:  # a decoder that is there failed: the data, not the syntax
        raise DicomRejected(f"truncated or unreadable pixel data ({_first_line(exc)})") from None


def _has_decoder(syntax: pydicom.uid.UID | None) -> bool:
    """Whether an installed pydicom plugin decodes this transfer syntax."""
    try:
        return syntax is not None and get_decoder(syntax).is_available
    except NotImplementedError:
        return False


def _slice_record(
    ds: Dataset, raw: np.ndarray, frame: int | None, rel_path: str, file_id: str, options: ReadOptions
) -> SliceRecord:
    groups = frame_groups(ds, frame)
    _check_orientation(ds, groups, options)
    return SliceRecord(
        rel_path=rel_path,
        hu=to_hu(raw, ds, _group_item(groups, "PixelValueTransformationSequence")),
        z=_z_position(ds, groups),
        frame=frame,
        pixel_spacing_mm=_pixel_spacing(ds, groups),
        slice_thickness_mm=_float_or_none(_first(ds, groups, "PixelMeasuresSequence", "SliceThickness")),
        kvp=_float_or_none(_first(ds, groups, "CTXRayDetailsSequence", "KVP")),
        instance=str(ds.get("SOPInstanceUID", "") or ""),
        file_id=file_id,
    )


def _check_orientation(ds: Dataset, groups: list[Dataset], options: ReadOptions) -> None:
    """Only axial slices are paired by z (docs/design.md, "Examples: pairing and features"). A gantry tilt turns
    the plane
    about the patient's left-right (x) axis, by at most MAX_GANTRY_TILT_DEG: a plane turned
    that way is tilted, read only with `allow_tilt`, and so is an axial plane whose
    GantryDetectorTilt is recorded. Any other plane (sagittal, coronal, oblique) is refused.
    A slice without ImageOrientationPatient is taken as axial."""
    x, _, z = _plane_normal(_first(ds, groups, "PlaneOrientationSequence", "ImageOrientationPatient")) or (0, 0, 1)
    from_axial, off_tilt_axis = math.degrees(math.acos(min(1.0, abs(z)))), math.degrees(math.asin(min(1.0, abs(x))))
    tolerance = options.axial_tolerance_deg
    if from_axial <= tolerance:
        lean = abs(_finite_or_none(_first(ds, groups, "CTAcquisitionDetailsSequence", "GantryDetectorTilt")) or 0.0)
    elif off_tilt_axis <= tolerance and from_axial <= MAX_GANTRY_TILT_DEG + tolerance:
        lean = from_axial
    else:
        raise DicomRejected(f"not an axial slice: its plane is {from_axial:.1f}° from axial (ImageOrientationPatient)")
    if lean > tolerance and not options.allow_tilt:
        raise DicomRejected(f"gantry-tilted slice ({lean:.1f}° from axial): tilted series are read only when allowed")


def _plane_normal(orientation) -> tuple[float, float, float] | None:
    """The unit normal (row × column direction) of ImageOrientationPatient; None when absent."""
    if orientation is None or orientation == "":
        return None
    try:
        row, column = np.array([float(v) for v in orientation], dtype=np.float64).reshape(2, 3)
    except (TypeError, ValueError):
        raise DicomRejected("ImageOrientationPatient is not six numbers") from None
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if not math.isfinite(length) or length < 1e-6:
        raise DicomRejected("ImageOrientationPatient does not give two directions")
    x, y, z = (float(v) / length for v in normal)
    return x, y, z


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
        return _finite_or_none(position[2])
    return _finite_or_none(ds.get("SliceLocation"))


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


def _finite_or_none(value) -> float | None:
    number = _float_or_none(value)
    return number if number is not None and math.isfinite(number) else None


def _int_or_none(value) -> int | None:
    number = _finite_or_none(value)
    return int(number) if number is not None and number == int(number) else None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]
