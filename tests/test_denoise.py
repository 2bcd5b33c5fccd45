"""`ctdenoise denoise` on real files: a simulated series, real SavedModels, pydicom read-back."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tf_keras as keras
from PIL import Image
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless

from ctdenoise.app.denoise import DenoiseError, denoise_series, resolve_model
from ctdenoise.contract.hu import HU_MAX, HU_MIN
from ctdenoise.contract.names import MODEL_METADATA_FILE, PRODUCT, RESEARCH_LABEL, product_version
from ctdenoise.dicomio.reader import read_ct_slices
from ctdenoise.simulator.dataset import simulate_dataset
from tests import dicom_factory
from tests.dicom_validators import assert_dcmtk_reads, assert_no_new_iod_errors, iod_errors
from tests.saved_models import export_layer

SHIFT = 0.1
"""Added by the shift model in normalised units: 0.1 · 3024 / 2 = 151.2 HU."""
KEPT = (
    "PatientID",
    "PatientName",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "KVP",
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "identity": export_layer(root / "identity", keras.layers.Identity()),
        "shift": export_layer(root / "shift", keras.layers.Rescaling(1.0, offset=SHIFT)),
    }


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    simulate_dataset(root, patients=1, slices=3, size=64, progress=None)
    return root / "SIM001" / "LDCT"


@pytest.fixture(scope="module")
def identity_run(models, series_dir, tmp_path_factory):
    lines: list[str] = []
    out = tmp_path_factory.mktemp("runs") / "out"
    report = denoise_series(
        models["identity"], series_dir, out, png=True, batch_size=2, model_version="v7", progress=lines.append
    )
    return report, lines


def _pairs(series: Path, out: Path) -> list[tuple[Path, Path]]:
    """(source file, output file) pairs, matched through the output's SourceImageSequence."""
    sources = {pydicom.dcmread(p).SOPInstanceUID: p for p in sorted(series.rglob("*.dcm"))}
    outputs = sorted(out.glob("*.dcm"))
    return [(sources[pydicom.dcmread(p).SourceImageSequence[0].ReferencedSOPInstanceUID], p) for p in outputs]


def _hu(path: Path) -> np.ndarray:
    return read_ct_slices(path, path.name)[0].hu


def test_output_is_a_new_derived_series_that_keeps_patient_study_and_geometry(identity_run, series_dir):
    report, lines = identity_run
    pairs = _pairs(series_dir, report.out_dir)
    assert report.slices == len(pairs) == 3
    outputs = [pydicom.dcmread(out) for _, out in pairs]
    sources = [pydicom.dcmread(src) for src, _ in pairs]
    assert {ds.SeriesInstanceUID for ds in outputs} == {report.series_uid}
    assert report.series_uid != sources[0].SeriesInstanceUID
    sop_uids = [ds.SOPInstanceUID for ds in outputs]
    assert len(set(sop_uids)) == 3 and not set(sop_uids) & {ds.SOPInstanceUID for ds in sources}
    for ds, src in zip(outputs, sources, strict=True):
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.Modality == "CT" and ds.SOPClassUID == CTImageStorage
        assert list(ds.ImageType[:2]) == ["DERIVED", "SECONDARY"]
        assert "v7" in ds.DerivationDescription
        assert ds.SeriesDescription == f"{src.SeriesDescription} denoised, {RESEARCH_LABEL}"
        assert ds.SeriesNumber == src.SeriesNumber + 1000
        assert (ds.PixelRepresentation, ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (1, 16, 16, 15)
        assert (ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType) == (1, 0, "HU")
        assert "PixelPaddingValue" not in ds
        for keyword in KEPT:
            assert ds.get(keyword) == src.get(keyword), keyword
    for done in ("2/3", "3/3"):
        assert any(re.fullmatch(rf"denoise: {done} slices \(noise level [0-9.–]+ HU\)", line) for line in lines), lines
    assert not any(str(sources[0].PatientName) in line for line in lines)


def test_output_says_what_made_it_and_that_it_is_research_output(identity_run, series_dir):
    report, _ = identity_run
    for _, out in _pairs(series_dir, report.out_dir):
        ds = pydicom.dcmread(out)
        assert RESEARCH_LABEL in ds.ImageComments and "identity generator v7" in ds.ImageComments
        equipment = ds.ContributingEquipmentSequence[-1]
        assert equipment.Manufacturer == PRODUCT
        assert list(equipment.SoftwareVersions) == [f"{PRODUCT} {product_version()}", "model v7"]
        assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == "109103"
        assert [(c.CodeValue, c.CodingSchemeDesignator) for c in ds.DerivationCodeSequence] == [("113087", "DCM")]


def test_research_label_can_be_turned_off(models, series_dir, tmp_path):
    report = denoise_series(models["identity"], series_dir, tmp_path / "out", research_label=False, progress=None)
    for src, out in _pairs(series_dir, report.out_dir):
        ds = pydicom.dcmread(out)
        assert ds.SeriesDescription == f"{pydicom.dcmread(src).SeriesDescription} denoised"
        assert "ImageComments" not in ds and ds.ContributingEquipmentSequence[-1].Manufacturer == PRODUCT


def test_output_passes_dciodvfy_and_dcmtk(identity_run, series_dir):
    report, _ = identity_run
    for src, out in _pairs(series_dir, report.out_dir):
        assert_no_new_iod_errors(src, out)
        assert_dcmtk_reads(out)


def test_dciodvfy_finds_a_missing_required_element(identity_run, tmp_path):
    """The validator used above can fail: a derived image without its Type 1 ImageType is an error."""
    report, _ = identity_run
    ds = pydicom.dcmread(next(report.out_dir.glob("*.dcm")))
    del ds.ImageType
    ds.save_as(tmp_path / "broken.dcm")
    assert any("ImageType" in error for error in iod_errors(tmp_path / "broken.dcm"))


def test_same_series_and_model_give_the_same_uids_another_model_other_ones(identity_run, models, series_dir, tmp_path):
    """What lets a store into a PACS that stopped half-way be completed by running it again."""
    report, _ = identity_run
    again = denoise_series(models["identity"], series_dir, tmp_path / "again", model_version="v7", progress=None)
    other = denoise_series(models["shift"], series_dir, tmp_path / "other", model_version="v7", progress=None)
    uids = [
        [pydicom.dcmread(p).SOPInstanceUID for p in sorted(r.out_dir.glob("*.dcm"))] for r in (report, again, other)
    ]
    assert again.series_uid == report.series_uid and uids[1] == uids[0]
    assert other.series_uid != report.series_uid and not set(uids[2]) & set(uids[0])


def test_identity_model_returns_the_input_hu_within_the_training_window(identity_run, series_dir):
    report, _ = identity_run
    for src, out in _pairs(series_dir, report.out_dir):
        expected = np.clip(_hu(src), HU_MIN, HU_MAX)
        np.testing.assert_array_equal(pydicom.dcmread(out).pixel_array, expected)


def test_shift_model_changes_hu(models, series_dir, tmp_path):
    report = denoise_series(models["shift"], series_dir, tmp_path / "out", progress=None)
    for src, out in _pairs(series_dir, report.out_dir):
        shift_hu = SHIFT * (HU_MAX - HU_MIN) / 2  # the normalised offset, in HU
        expected = np.clip(np.rint(np.clip(_hu(src), HU_MIN, HU_MAX) + shift_hu), -1024, 3071)
        np.testing.assert_array_equal(_hu(out), expected)
    assert "shift" in pydicom.dcmread(next(report.out_dir.glob("*.dcm"))).DerivationDescription


def test_png_preview_shows_ldct_and_denoised_side_by_side(identity_run):
    report, _ = identity_run
    assert [p.name for p in report.png_paths] == ["0001.png", "0002.png", "0003.png"]
    for path in report.png_paths:
        assert path.parent == report.out_dir / "preview"
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "L", (128, 64))
            image.verify()


def test_compressed_input_is_decoded_and_written_uncompressed(models, series_dir, tmp_path):
    series = tmp_path / "LDCT"
    shutil.copytree(series_dir, series)
    for path in series.glob("*.dcm"):
        dicom_factory.compress(path, JPEG2000Lossless)
    report = denoise_series(models["identity"], series, tmp_path / "out", progress=None)
    for src, out in _pairs(series, report.out_dir):
        assert pydicom.dcmread(out).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        np.testing.assert_array_equal(_hu(out), np.clip(_hu(src), HU_MIN, HU_MAX))
        assert_no_new_iod_errors(src, out)


def test_enhanced_multiframe_input_gives_one_ct_image_per_frame(models, tmp_path):
    frames = [dicom_factory.body_hu(32, seed=1), dicom_factory.body_hu(32, seed=2)]
    source = dicom_factory.write_enhanced_ct(
        tmp_path / "P9" / "CT" / "enh.dcm", frames, zs=[0.0, 3.0], slopes=[1.0, 2.0], intercepts=[-1024.0, 0.0]
    )
    report = denoise_series(models["identity"], source.parent, tmp_path / "out", progress=None)
    outputs = [pydicom.dcmread(p) for p in sorted(report.out_dir.glob("*.dcm"))]
    assert [float(ds.ImagePositionPatient[2]) for ds in outputs] == [0.0, 3.0]
    assert [ds.SourceImageSequence[0].ReferencedFrameNumber for ds in outputs] == [1, 2]
    for path in sorted(report.out_dir.glob("*.dcm")):
        assert_no_new_iod_errors(source, path)
    for ds, record in zip(outputs, read_ct_slices(source, "enh.dcm"), strict=True):
        assert ds.SOPClassUID == CTImageStorage and "NumberOfFrames" not in ds
        assert "PerFrameFunctionalGroupsSequence" not in ds and [float(v) for v in ds.PixelSpacing] == [0.8, 0.8]
        np.testing.assert_array_equal(ds.pixel_array, np.clip(record.hu, HU_MIN, HU_MAX))


def test_slices_of_different_sizes_are_batched_separately(models, tmp_path):
    for index, size in enumerate([32, 48, 32]):
        dicom_factory.write_slice(tmp_path, "P1", "LDCT", index, z=3.0 * index, hu=dicom_factory.body_hu(size))
    report = denoise_series(models["identity"], tmp_path / "P1" / "LDCT", tmp_path / "out", progress=None)
    assert [pydicom.dcmread(p).Rows for p in sorted(report.out_dir.glob("*.dcm"))] == [32, 48, 32]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (dicom_factory.make_non_ct, r"LDCT/0002\.dcm: not CT \(modality MR\)"),
        (dicom_factory.truncate, r"LDCT/0002\.dcm: truncated or unreadable pixel data"),
        (lambda path: path.write_bytes(b"not dicom"), r"LDCT/0002\.dcm: not a DICOM file"),
    ],
)
def test_bad_file_refused_before_anything_is_written(models, series_dir, tmp_path, damage, reason):
    series = tmp_path / "LDCT"
    shutil.copytree(series_dir, series)
    damage(series / "0002.dcm")
    with pytest.raises(DenoiseError, match=reason):
        denoise_series(models["identity"], series, tmp_path / "out", progress=None)
    assert [p.name for p in tmp_path.iterdir()] == ["LDCT"]


def test_two_series_in_one_folder_refused(models, series_dir, tmp_path):
    series = tmp_path / "LDCT"
    shutil.copytree(series_dir, series)
    ds = pydicom.dcmread(series / "0001.dcm")
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(series / "0001.dcm")
    with pytest.raises(DenoiseError, match="2 series"):
        denoise_series(models["identity"], series, tmp_path / "out", progress=None)


def test_empty_input_folder_refused(models, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DenoiseError, match="empty folder"):
        denoise_series(models["identity"], tmp_path / "empty", tmp_path / "out", progress=None)
    assert not (tmp_path / "out").exists()


def test_existing_non_empty_output_folder_refused(models, series_dir, tmp_path):
    keep = tmp_path / "out" / "keep.txt"
    keep.parent.mkdir()
    keep.write_text("mine")
    with pytest.raises(DenoiseError, match="not an empty folder"):
        denoise_series(models["identity"], series_dir, keep.parent, progress=None)
    assert list(keep.parent.iterdir()) == [keep] and keep.read_text() == "mine"


def test_resolve_model_latest_picks_the_numerically_largest_version(tmp_path):
    for version in ("9", "10", "notes"):
        (tmp_path / "serving" / version).mkdir(parents=True)
        (tmp_path / "serving" / version / "saved_model.pb").touch()
        (tmp_path / "serving" / version / MODEL_METADATA_FILE).touch()  # written last: the version is complete
    assert resolve_model("latest", tmp_path) == str(tmp_path / "serving" / "10")
    assert resolve_model(str(tmp_path / "serving" / "9"), tmp_path) == str(tmp_path / "serving" / "9")


def test_resolve_model_errors_clearly(tmp_path):
    with pytest.raises(DenoiseError, match=r"no pushed model under .*serving: run `ctdenoise run --until push` first"):
        resolve_model("latest", tmp_path)
    with pytest.raises(DenoiseError, match="no saved_model.pb"):
        resolve_model(str(tmp_path), tmp_path)


def test_missing_model_refused_before_anything_is_written(series_dir, tmp_path):
    with pytest.raises(DenoiseError, match="no saved_model.pb"):
        denoise_series(tmp_path / "nowhere", series_dir, tmp_path / "out", progress=None)
    assert not (tmp_path / "out").exists()


def test_a_bare_output_name_is_a_folder_in_the_working_folder(models, series_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = denoise_series(models["identity"], series_dir, Path("derived"), progress=None)
    assert report.out_dir.resolve() == tmp_path / "derived"
    assert len(list((tmp_path / "derived").glob("*.dcm"))) == 3


@pytest.mark.parametrize("target", ["empty folder", "missing folder"])
def test_a_symbolic_link_as_output_writes_where_it_points(models, series_dir, tmp_path, target):
    """The link is resolved before anything is loaded, so the series lands where it points,
    an empty folder or one a dangling link names, and the link is left as it was."""
    pointed = tmp_path / target.replace(" ", "_")
    if target == "empty folder":
        pointed.mkdir()
    link = tmp_path / "out"
    link.symlink_to(pointed)
    denoise_series(models["identity"], series_dir, link, progress=None)
    assert link.is_symlink() and len(list(pointed.glob("*.dcm"))) == 3
