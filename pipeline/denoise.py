"""`ctdenoise denoise`: run a trained generator over one CT series, write a new derived series.

The input folder must hold one CT series and nothing else: every file is read and checked
(`components.dicom_hu`) before the model is loaded or anything is written, so a bad file
stops the command with its name and reason instead of leaving a partial series. The output
is assembled in a hidden folder beside `out_dir` and renamed into place at the end.

Output: one CT Image Storage file per input slice, named 0001.dcm, 0002.dcm, ... in the
order of the sorted input files (then frame order). An enhanced multi-frame file gives one
single-frame file per frame, its position, orientation, spacing and window moved from the
functional groups to the top level. Each file keeps the source's patient, study, geometry
and other attributes, and is marked DERIVED with a new series and SOP Instance UIDs, a
SourceImageSequence pointing at its source, InstanceNumber matching the file number, and
uncompressed signed 16-bit HU pixels.
Tag values are copied, never printed: progress lines carry counts and paths only.
"""
from __future__ import annotations

import copy
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

# Private, but it is the one definition of "the functional groups that apply to a frame".
from components.dicom_hu import CT_FLOOR_HU, DicomRejected, SliceRecord, _frame_groups, read_ct_slices
from components.features import SOFT_TISSUE_LEVEL, SOFT_TISSUE_WIDTH

CT_CEILING_HU = 3071
"""Top of the 12-bit CT scale; output HU are clipped to [CT_FLOOR_HU, CT_CEILING_HU]."""
SERIES_NUMBER_OFFSET = 1000

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


class DenoiseError(ValueError):
    """A problem with the model, the input series or the output folder; the message is one line."""


@dataclass
class DenoiseReport:
    """What `denoise_series` wrote."""

    out_dir: Path
    slices: int
    series_uid: str
    png_paths: list[Path]
    seconds: float


@dataclass(frozen=True)
class _Slice:
    """One input slice and what its output copies: the header of its file (without pixel data
    and functional groups, shared by the frames of a file) and its frame's functional groups."""

    record: SliceRecord
    header: Dataset
    groups: list[Dataset]
    number: int
    name: str


def denoise_series(model_dir: Path, input_dir: Path, out_dir: Path, *, png: bool = False,
                   batch_size: int = 4, model_version: str = "",
                   progress: Callable[[str], None] | None = print) -> DenoiseReport:
    """Denoise the CT series in `input_dir` with the SavedModel in `model_dir` into `out_dir`.

    `out_dir` must not exist or be empty. With `png`, `out_dir/preview/NNNN.png` shows each
    slice as LDCT | denoised in a soft-tissue window. Raises DenoiseError on bad input.
    """
    say = progress or (lambda _line: None)
    start = time.monotonic()
    if batch_size < 1:
        raise DenoiseError(f"batch size must be at least 1, got {batch_size}")
    _check_out_dir(out_dir, input_dir)
    slices = _read_series(input_dir)
    say(f"denoise: {len(slices)} slices read from {input_dir}")
    model = _load_model(model_dir)
    series_uid = generate_uid()
    derivation = f"ctdenoise CycleGAN generator {model_version or model_dir.name}"
    staging = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex[:8]}.partial")
    staging.mkdir(parents=True)
    try:
        pngs = _write_series(model, slices, staging, series_uid, derivation, png, batch_size, say)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    seconds = time.monotonic() - start
    say(f"denoise: wrote {len(slices)} slices to {out_dir} in {seconds:.1f} s")
    return DenoiseReport(out_dir, len(slices), series_uid, [out_dir / p for p in pngs], seconds)


def resolve_model(model: str, run_root: Path) -> Path:
    """A SavedModel directory, or for "latest" the newest version Pusher wrote under run_root/serving.

    Pusher names versions by integer timestamp, so the newest is the numerically largest
    (not the lexically last: "9" < "10").
    """
    if model == "latest":
        serving = run_root / "serving"
        versions = [d for d in serving.glob("*") if d.name.isdigit() and (d / "saved_model.pb").is_file()]
        if not versions:
            raise DenoiseError(f"no pushed model under {serving}: run `ctdenoise run --until push` first")
        return max(versions, key=lambda d: int(d.name))
    path = Path(model)
    if not (path / "saved_model.pb").is_file():
        raise DenoiseError(f"{model}: not a SavedModel folder (no saved_model.pb) and not 'latest'")
    return path


def soft_tissue_window(hu: np.ndarray) -> np.ndarray:
    """HU → uint8 grey levels in the W400/L40 window (below black, above white)."""
    low = SOFT_TISSUE_LEVEL - SOFT_TISSUE_WIDTH / 2
    grey = (np.asarray(hu, dtype=np.float32) - low) / SOFT_TISSUE_WIDTH * 255.0
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8)


def labelled_panels(images: dict[str, np.ndarray]) -> Image.Image:
    """HU images of one size side by side in the soft-tissue window, each labelled at its top left."""
    panels = [soft_tissue_window(image) for image in images.values()]
    picture = Image.fromarray(np.hstack(panels))
    draw = ImageDraw.Draw(picture)
    width = panels[0].shape[1]
    for index, label in enumerate(images):
        draw.text((index * width + 4, 4), label, fill=255)
    return picture


def _check_out_dir(out_dir: Path, input_dir: Path) -> None:
    """Refuse to overwrite anything, or to write into the series being read."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DenoiseError(f"{out_dir}: already exists and is not an empty folder; choose a new output folder")
    if out_dir.resolve().is_relative_to(input_dir.resolve()):
        raise DenoiseError(f"{out_dir}: inside the input series folder; choose a folder outside it")


def _read_series(input_dir: Path) -> list[_Slice]:
    """Every file under `input_dir` as CT slices, or DenoiseError naming the first bad file."""
    if not input_dir.is_dir():
        raise DenoiseError(f"{input_dir}: not a folder")
    files = sorted(p for p in input_dir.rglob("*") if p.is_file())
    if not files:
        raise DenoiseError(f"{input_dir}: empty folder; expected the DICOM files of one CT series")
    parts = [part for path in files for part in _read_file(input_dir, path)]
    series = {str(header.get("SeriesInstanceUID", "")) for _, header, _ in parts}
    if len(series) > 1:
        raise DenoiseError(f"{input_dir}: holds files of {len(series)} series; give the folder of one series")
    digits = max(4, len(str(len(parts))))
    return [_Slice(*part, number=i, name=f"{i:0{digits}d}") for i, part in enumerate(parts, 1)]


def _read_file(input_dir: Path, path: Path) -> list[tuple[SliceRecord, Dataset, list[Dataset]]]:
    """(slice, file header, frame's functional groups) for each slice of one file, or
    DenoiseError naming the file.

    The functional groups are split off the header here, once per file: copying them
    with the header for every frame would cost time quadratic in the number of frames.
    """
    name = f"{input_dir.name}/{path.relative_to(input_dir).as_posix()}"
    try:
        records = read_ct_slices(path, name)
        header = _read_header(path)
    except DicomRejected as exc:
        raise DenoiseError(f"{name}: {exc.reason}") from None
    groups = [_frame_groups(header, record.frame or 0) for record in records]
    for keyword in _MULTI_FRAME_ELEMENTS:
        header.pop(keyword, None)
    return [(record, header, frame_groups) for record, frame_groups in zip(records, groups)]


def _read_header(path: Path) -> Dataset:
    with warnings.catch_warnings():  # pydicom warnings may quote element values (PHI)
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise DicomRejected(f"unreadable DICOM header ({type(exc).__name__})") from None


def _load_model(model_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The SavedModel's HU → HU serving signature, loaded once.

    TensorFlow is imported here rather than with the module, so input and output folder
    errors are reported before its start-up of several seconds.
    """
    if not (model_dir / "saved_model.pb").is_file():
        raise DenoiseError(f"{model_dir}: not a SavedModel folder (no saved_model.pb)")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # the exported generator is a tf_keras (Keras 2) model
    import tensorflow as tf

    from trainer_module.export import OUTPUT_KEY, SERVING_SIGNATURE

    try:
        serve = tf.saved_model.load(str(model_dir)).signatures[SERVING_SIGNATURE]
    except Exception as exc:
        raise DenoiseError(f"{model_dir}: cannot load the model's {SERVING_SIGNATURE} signature "
                           f"({type(exc).__name__})") from None
    return lambda hu: serve(hu=tf.constant(hu))[OUTPUT_KEY].numpy()


def _write_series(model: Callable[[np.ndarray], np.ndarray], slices: list[_Slice], folder: Path,
                  series_uid: str, derivation: str, png: bool, batch_size: int,
                  say: Callable[[str], None]) -> list[Path]:
    """Denoise batch by batch and write each slice's DICOM (and preview); returns preview paths relative to `folder`."""
    pngs, done = [], 0
    for batch in _batches(slices, batch_size):
        hu = np.stack([s.record.hu for s in batch]).astype(np.float32)[..., np.newaxis]
        for item, denoised in zip(batch, _to_ct_hu(model(hu)[..., 0])):
            ds = _derived_dataset(item, denoised, series_uid, derivation)
            ds.save_as(folder / f"{item.name}.dcm", enforce_file_format=True)
            if png:
                pngs.append(_write_preview(folder, item, denoised))
        done += len(batch)
        say(f"denoise: {done}/{len(slices)} slices")
    return sorted(pngs)


def _batches(slices: list[_Slice], size: int) -> Iterator[list[_Slice]]:
    """Runs of at most `size` slices of one shape: a series may mix matrix sizes, a batch cannot."""
    by_shape: dict[tuple[int, ...], list[_Slice]] = {}
    for item in slices:
        by_shape.setdefault(item.record.hu.shape, []).append(item)
    for group in by_shape.values():
        for start in range(0, len(group), size):
            yield group[start:start + size]


def _to_ct_hu(hu: np.ndarray) -> np.ndarray:
    """Model output → int16 HU on the CT scale."""
    return np.clip(np.rint(hu), CT_FLOOR_HU, CT_CEILING_HU).astype(np.int16)


def _derived_dataset(item: _Slice, hu: np.ndarray, series_uid: str, derivation: str) -> Dataset:
    """A copy of the source header turned into a derived single-frame CT Image holding `hu`."""
    ds = copy.deepcopy(item.header)
    _flatten_groups(ds, item.groups)
    for keyword in _STALE_PIXEL_ELEMENTS:
        ds.pop(keyword, None)
    sop_uid = generate_uid()
    ds.file_meta = _file_meta(sop_uid)
    ds.SourceImageSequence = [_source_reference(item)]
    ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID = CTImageStorage, sop_uid, series_uid
    ds.InstanceNumber = item.number
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.DerivationDescription = derivation
    ds.SeriesNumber = int(ds.get("SeriesNumber") or 0) + SERIES_NUMBER_OFFSET
    suffix = " denoised"
    ds.SeriesDescription = (str(ds.get("SeriesDescription", ""))[: 64 - len(suffix)] + suffix).strip()
    ds.set_pixel_data(hu, "MONOCHROME2", 16, generate_instance_uid=False)
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
    return ds


def _flatten_groups(ds: Dataset, groups: list[Dataset]) -> None:
    """Copy a frame's geometry and window out of its functional groups (per-frame wins over shared)."""
    for group in reversed(groups):
        for keyword in _FLATTENED_GROUPS:
            if group.get(keyword):
                ds.update(copy.deepcopy(group[keyword][0]))


def _source_reference(item: _Slice) -> Dataset:
    """A SourceImageSequence item: which image (and frame) this one was derived from."""
    ref = Dataset()
    ref.ReferencedSOPClassUID = item.header.SOPClassUID
    ref.ReferencedSOPInstanceUID = item.header.SOPInstanceUID
    if item.record.frame is not None:
        ref.ReferencedFrameNumber = item.record.frame + 1
    return ref


def _file_meta(sop_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _write_preview(folder: Path, item: _Slice, denoised: np.ndarray) -> Path:
    """preview/NNNN.png: LDCT | denoised side by side, so the change is visible at a glance."""
    path = Path("preview") / f"{item.name}.png"
    (folder / path).parent.mkdir(exist_ok=True)
    pair = np.hstack([soft_tissue_window(item.record.hu), soft_tissue_window(denoised)])
    Image.fromarray(pair).save(folder / path)
    return path


def _publish(staging: Path, out_dir: Path) -> None:
    """Rename the finished folder to `out_dir` (same filesystem: atomic; replaces an empty folder)."""
    try:
        staging.rename(out_dir)
    except OSError as exc:
        raise DenoiseError(f"{out_dir}: cannot move the output into place ({exc.strerror})") from None
