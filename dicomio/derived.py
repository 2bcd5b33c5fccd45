"""A derived CT series: each denoised slice written as a CT Image that keeps its source's
patient, study and geometry.

An enhanced multi-frame source gives one single-frame CT Image per frame, its position,
orientation, spacing and window moved from the functional groups to the top level. Each
output is marked DERIVED with a new series and SOP Instance UID, a SourceImageSequence
pointing at its source (and frame), and uncompressed signed 16-bit HU pixels. Tag values
are copied, never printed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from contract.hu import CT_CEILING_HU, CT_FLOOR_HU
from dicomio.reader import CtFile, SliceRecord, frame_groups

SERIES_NUMBER_OFFSET = 1000
"""The derived series' number is its source's plus this."""

_STALE_PIXEL_ELEMENTS = (
    "PixelPaddingValue", "PixelPaddingRangeLimit", "ModalityLUTSequence",
    "SmallestImagePixelValue", "LargestImagePixelValue",
    "SmallestPixelValueInSeries", "LargestPixelValueInSeries",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
)
"""Describe the source's stored values or encapsulation: wrong for the new int16 HU pixels."""
_MULTI_FRAME_ELEMENTS = (
    "NumberOfFrames", "FrameIncrementPointer", "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence", "DimensionOrganizationSequence",
    "DimensionIndexSequence", "DimensionOrganizationType",
)
"""Enhanced (multi-frame) structure that has no meaning in a single-frame CT Image."""
_FLATTENED_GROUPS = (
    "PixelMeasuresSequence", "PlanePositionSequence", "PlaneOrientationSequence",
    "FrameVOILUTSequence", "CTXRayDetailsSequence",
)
"""Functional groups whose contents (spacing, position, orientation, window, kVp) a classic
CT Image carries at the top level."""


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
    return [SourceSlice(record, header, frame) for record, frame in zip(ct_file.slices, groups)]


def to_ct_hu(hu: np.ndarray) -> np.ndarray:
    """Model output → int16 HU on the CT scale."""
    return np.clip(np.rint(hu), CT_FLOOR_HU, CT_CEILING_HU).astype(np.int16)


def derived_dataset(source: SourceSlice, hu: np.ndarray, number: int, series_uid: str,
                    derivation: str) -> Dataset:
    """A copy of the source header turned into derived single-frame CT Image `number` holding `hu`."""
    ds = copy.deepcopy(source.header)
    _flatten_groups(ds, source.groups)
    for keyword in _STALE_PIXEL_ELEMENTS:
        ds.pop(keyword, None)
    sop_uid = generate_uid()
    ds.file_meta = ct_file_meta(sop_uid)
    ds.SourceImageSequence = [_source_reference(source)]
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = CTImageStorage, sop_uid, series_uid
    ds.InstanceNumber = number
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = derivation
    ds.SeriesNumber = int(ds.get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET
    suffix = " denoised"
    ds.SeriesDescription = (str(ds.get("SeriesDescription", ""))[: 64 - len(suffix)] + suffix).strip()
    ds.set_pixel_data(to_ct_hu(hu), "MONOCHROME2", 16, generate_instance_uid=False)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
    return ds


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
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta
