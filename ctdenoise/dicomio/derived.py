"""A derived CT series: each denoised slice written as a CT Image that keeps its source's
patient, study and geometry.

An enhanced multi-frame source gives one single-frame CT Image per frame, its position,
orientation, spacing and window moved from the functional groups to the top level. Each
output is marked DERIVED with a new series and SOP Instance UID, a SourceImageSequence
pointing at its source (and frame), and uncompressed signed 16-bit HU pixels. Tag values
are copied, never printed.

Each output also says what made it (docs/design.md, "A PACS on either side: DICOMweb (`pull`, `denoise`)"):
ContributingEquipmentSequence
names ctdenoise, its version and the model's, DerivationCodeSequence codes the change as
smoothing (DCM 113087), and unless the user turns it off, SeriesDescription and
ImageComments say it is research output, not for diagnostic use. Its UIDs follow from the
source's UIDs and the model's identity (`derived_uid`): denoising the same series with the
same model again gives the same series, so a store that stopped half-way is completed by a
retry, not duplicated.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ctdenoise.contract.hu import CT_CEILING_HU, CT_FLOOR_HU
from ctdenoise.contract.names import PRODUCT, RESEARCH_LABEL, product_version
from ctdenoise.dicomio.reader import CtFile, SliceRecord, frame_groups

SERIES_NUMBER_OFFSET = 1000
"""The derived series' number is its source's plus this."""

_STALE_PIXEL_ELEMENTS = (
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "ModalityLUTSequence",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths",
)
"""Describe the source's stored values or encapsulation: wrong for the new int16 HU pixels."""
_MULTI_FRAME_ELEMENTS = (
    "NumberOfFrames",
    "FrameIncrementPointer",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
    "DimensionOrganizationSequence",
    "DimensionIndexSequence",
    "DimensionOrganizationType",
)
"""Enhanced (multi-frame) structure that has no meaning in a single-frame CT Image."""
_FLATTENED_GROUPS = (
    "PixelMeasuresSequence",
    "PlanePositionSequence",
    "PlaneOrientationSequence",
    "FrameVOILUTSequence",
    "CTXRayDetailsSequence",
)
"""Functional groups whose contents (spacing, position, orientation, window, kVp) a classic
CT Image carries at the top level."""
_DENOISING_CODE = ("113087", "DCM", "Smoothing")
"""DerivationCodeSequence: DICOM's Image Derivation code (CID 7203) nearest to denoising."""
_MODIFYING_EQUIPMENT_CODE = ("109103", "DCM", "Modifying Equipment")
"""ContributingEquipmentSequence's purpose of reference: equipment that changed the image."""


@dataclass(frozen=True)
class Provenance:
    """What made a derived series: which model of the family, its version, a digest of the
    exported model (so that two models of one name and version give different UIDs), whether
    the series is labelled research output, and the noise level the user gave in place of each
    slice's estimate (`denoise --strength`; None: estimated), which also changes the UIDs."""

    model_name: str
    model_version: str
    model_digest: str
    research_label: bool = True
    strength_hu: float | None = None

    @property
    def derivation(self) -> str:
        return f"{PRODUCT} {self.model_name} generator {self.model_version}"


def derived_reason(ds: Dataset) -> str:
    """Why an instance is derived rather than a scan (its ImageType says DERIVED, or ctdenoise
    is among its contributing equipment), or "" for an original image."""
    image_type = ds.get("ImageType")
    if image_type and str(image_type[0]).upper() == "DERIVED":
        return "ImageType DERIVED"
    for item in ds.get("ContributingEquipmentSequence", []):
        if item.get("Manufacturer") == PRODUCT:
            return f"made by {PRODUCT}"
    return ""


MAX_NAME_CHARS = 54
"""The longest model name that fits, with the word after it, in a DICOM LO value
(ManufacturerModelName "<name> generator": 64 characters)."""


def text_problem(text: str) -> str | None:
    """Why `text` (a model's name) cannot be written into the derived series' text elements,
    or None: LO values hold at most 64 characters, no backslash (it separates
    values) and no control characters."""
    if not text:
        return "an empty name"
    if len(text) > MAX_NAME_CHARS:
        return f"a name of {len(text)} characters (at most {MAX_NAME_CHARS})"
    bad = sorted({c for c in text if c == "\\" or ord(c) < 32 or ord(c) == 127})
    if bad:
        return f"a name with characters DICOM text cannot hold ({', '.join(repr(c) for c in bad)})"
    return None


@dataclass(frozen=True)
class SourceSlice:
    """One input slice and what its output copies: the header of its file (without pixel
    data and functional groups, shared by the frames of a file) and its frame's groups."""

    record: SliceRecord
    header: Dataset
    groups: list[Dataset]


def source_slices(ct_file: CtFile) -> list[SourceSlice]:
    """The slices of one file, ready to derive from.

    The functional groups are split off the header here, once per file: copying them with
    the header for every frame would cost time quadratic in the number of frames.
    """
    header = ct_file.header
    groups = [frame_groups(header, record.frame or 0) for record in ct_file.slices]
    for keyword in _MULTI_FRAME_ELEMENTS:
        header.pop(keyword, None)
    return [SourceSlice(record, header, frame) for record, frame in zip(ct_file.slices, groups, strict=True)]


def to_ct_hu(hu: np.ndarray) -> np.ndarray:
    """Model output → int16 HU on the CT scale."""
    return np.clip(np.rint(hu), CT_FLOOR_HU, CT_CEILING_HU).astype(np.int16)


def derived_uid(provenance: Provenance, *parts: object) -> str:
    """A UID that depends only on the model (its digest and version) and `parts` (the
    source's UIDs): the same input and model always give the same derived UIDs."""
    strength = [] if provenance.strength_hu is None else [f"strength {provenance.strength_hu!r}"]
    return generate_uid(
        entropy_srcs=[PRODUCT, provenance.model_digest, provenance.model_version, *strength, *map(str, parts)]
    )


def derived_dataset(
    source: SourceSlice, hu: np.ndarray, number: int, series_uid: str, provenance: Provenance, noise_level_hu: float
) -> Dataset:
    """A copy of the source header turned into derived single-frame CT Image `number` holding `hu`,
    denoised at `noise_level_hu`, which its DerivationDescription states."""
    ds = copy.deepcopy(source.header)
    _flatten_groups(ds, source.groups)
    for keyword in _STALE_PIXEL_ELEMENTS:
        ds.pop(keyword, None)
    sop_uid = derived_uid(provenance, series_uid, source.header.SOPInstanceUID, source.record.frame or 0)
    ds.file_meta = ct_file_meta(sop_uid)
    ds.SourceImageSequence = [_source_reference(source)]
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = CTImageStorage, sop_uid, series_uid
    ds.InstanceNumber = number
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    how = "estimated from the slice" if provenance.strength_hu is None else "given"
    ds.DerivationDescription = f"{provenance.derivation}; noise level {noise_level_hu:.1f} HU, {how}"
    ds.DerivationCodeSequence = [_code(*_DENOISING_CODE)]
    ds.ContributingEquipmentSequence = [
        *ds.get("ContributingEquipmentSequence", []),
        _contributing_equipment(provenance),
    ]
    ds.SeriesNumber = int(ds.get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET
    suffix = f" denoised, {RESEARCH_LABEL}" if provenance.research_label else " denoised"
    ds.SeriesDescription = (str(ds.get("SeriesDescription", ""))[: 64 - len(suffix)] + suffix).strip()
    if provenance.research_label:
        ds.ImageComments = (
            f"Research output of {provenance.derivation}: {RESEARCH_LABEL}. " + str(ds.get("ImageComments", ""))
        ).strip()
    ds.BurnedInAnnotation = "NO"
    ds.set_pixel_data(to_ct_hu(hu), "MONOCHROME2", 16, generate_instance_uid=False)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _contributing_equipment(provenance: Provenance) -> Dataset:
    """The ContributingEquipmentSequence item for this program and model, appended to the
    source's own items (earlier equipment that changed the images stays named)."""
    item = Dataset()
    item.PurposeOfReferenceCodeSequence = [_code(*_MODIFYING_EQUIPMENT_CODE)]
    item.Manufacturer = PRODUCT
    item.ManufacturerModelName = f"{provenance.model_name} generator"[:64]
    item.SoftwareVersions = [f"{PRODUCT} {product_version()}"[:64], f"model {provenance.model_version}"[:64]]
    item.ContributionDateTime = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d%H%M%S+0000")
    item.ContributionDescription = f"Denoised by {provenance.derivation}"[:64]
    return item


def _flatten_groups(ds: Dataset, groups: list[Dataset]) -> None:
    """Copy a frame's geometry and window out of its functional groups (per-frame wins over shared)."""
    for group in reversed(groups):
        for keyword in _FLATTENED_GROUPS:
            if group.get(keyword):
                ds.update(copy.deepcopy(group[keyword][0]))


def _source_reference(source: SourceSlice) -> Dataset:
    """A SourceImageSequence item: which image (and frame) this one was derived from."""
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.header.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.header.SOPInstanceUID
    if source.record.frame is not None:
        ref.ReferencedFrameNumber = source.record.frame + 1
    return ref


def ct_file_meta(sop_uid: str) -> FileMetaDataset:
    """File meta information for an uncompressed (explicit VR little endian) CT Image Storage
    instance: the derived series here, and the simulator's scans."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta
