"""The DICOM simulator: valid files, the data contract's layout and pairing, physical noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from skimage.transform import iradon, radon, resize

from ctdenoise.app.cli import main
from ctdenoise.app.demo import REAL_CT
from ctdenoise.contract.noise import flat_rois, measure
from ctdenoise.simulator import physics, tomography
from ctdenoise.simulator.dataset import SLICE_THICKNESS_MM, simulate_dataset
from ctdenoise.simulator.dicom_writer import SeriesInfo, write_ct_slice
from ctdenoise.simulator.phantom import FOV_MM, fov_mask, random_anatomy, render
from tests.dicom_factory import pydicom_file

SERIES = SeriesInfo("SIM001", "Simulated^SIM001", "1.2.3", "1.2.3.1", 1, "NDCT", "1.2.3.2")


def _hu(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return apply_modality_lut(ds.pixel_array, ds)


def _dataset_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "data"
    simulate_dataset(out, patients=2, slices=3, size=64, seed=7, progress=None)
    return out


# --- DICOM writer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "representation, slope, intercept",
    [("uint16", 1.0, None), ("int16", 1.0, None), ("uint16", 0.5, None), ("int16", 2.5, -100.0)],
)
def test_written_slice_is_valid_ct_and_round_trips_hu(
    tmp_path: Path, representation: str, slope: float, intercept: float | None
) -> None:
    hu = np.random.default_rng(0).uniform(-1024, 3000, (40, 48))
    path = tmp_path / "slice.dcm"
    write_ct_slice(
        path,
        hu,
        SERIES,
        instance_number=2,
        z_mm=-4.5,
        pixel_spacing_mm=0.75,
        slice_thickness_mm=3.0,
        representation=representation,
        slope=slope,
        intercept=intercept,
    )
    ds = pydicom.dcmread(path)
    assert ds.Modality == "CT" and ds.SOPClassUID == CTImageStorage
    assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.pixel_array.shape == (40, 48)
    assert ds.PixelRepresentation == (1 if representation == "int16" else 0)
    assert np.abs(_hu(path) - hu).max() <= slope / 2 + 1e-6
    assert float(ds.ImagePositionPatient[2]) == float(ds.SliceLocation) == -4.5
    assert float(ds.ImagePositionPatient[0]) + 47 / 2 * 0.75 == pytest.approx(0.0)
    assert [ds.PatientID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID] == ["SIM001", "1.2.3.1", "1.2.3.2"]


def test_writer_clips_to_the_stored_range_and_sets_extra_keywords(tmp_path: Path) -> None:
    hu = np.array([[-3000.0, 0.0], [70000.0, 40.0]])
    path = tmp_path / "slice.dcm"
    write_ct_slice(
        path,
        hu,
        SERIES,
        instance_number=1,
        z_mm=0.0,
        pixel_spacing_mm=1.0,
        slice_thickness_mm=3.0,
        extra={"BodyPartExamined": "CHEST"},
    )
    assert _hu(path).tolist() == [[-1024.0, 0.0], [65535 - 1024.0, 40.0]]
    assert pydicom.dcmread(path).BodyPartExamined == "CHEST"
    with pytest.raises(ValueError, match="not a DICOM keyword"):
        write_ct_slice(
            path,
            hu,
            SERIES,
            instance_number=1,
            z_mm=0.0,
            pixel_spacing_mm=1.0,
            slice_thickness_mm=3.0,
            extra={"NoSuchKeyword": 1},
        )


# --- Data set layout, pairing, determinism ---------------------------------------------------


def test_layout_counts_and_pairing(dataset: Path) -> None:
    assert sorted(p.name for p in dataset.iterdir()) == ["SIM001", "SIM002"]
    assert len(_dataset_files(dataset)) == 2 * 3 * 2
    for patient in ("SIM001", "SIM002"):
        low = [pydicom.dcmread(p) for p in sorted((dataset / patient / "LDCT").glob("*.dcm"))]
        full = [pydicom.dcmread(p) for p in sorted((dataset / patient / "NDCT").glob("*.dcm"))]
        assert [float(d.ImagePositionPatient[2]) for d in low] == [float(d.ImagePositionPatient[2]) for d in full]
        z = [float(d.ImagePositionPatient[2]) for d in full]
        assert np.diff(z) == pytest.approx([SLICE_THICKNESS_MM] * 2)
        assert {d.StudyInstanceUID for d in low + full} == {full[0].StudyInstanceUID}
        assert len({d.SeriesInstanceUID for d in low} | {d.SeriesInstanceUID for d in full}) == 2
        assert {d.PatientID for d in low + full} == {patient}
        assert full[0].pixel_array.shape == (64, 64)
        assert float(full[0].PixelSpacing[0]) == pytest.approx(FOV_MM / 64)


def test_same_seed_is_byte_identical_and_another_seed_differs(dataset: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    report = simulate_dataset(tmp_path / "again", patients=2, slices=3, size=64, seed=7, progress=lines.append)
    assert list(report.patients) == ["SIM001", "SIM002"] and report.files_written == 12
    assert "patient SIM002 slice 3/3" in lines[-2] and "wrote 12 files" in lines[-1]
    for first, second in zip(_dataset_files(dataset), _dataset_files(tmp_path / "again"), strict=True):
        assert first.read_bytes() == second.read_bytes()
    simulate_dataset(tmp_path / "other", patients=1, slices=1, size=64, seed=8, progress=None)
    other = pydicom.dcmread(tmp_path / "other/SIM001/NDCT/0001.dcm")
    same = pydicom.dcmread(dataset / "SIM001/NDCT/0001.dcm")
    assert other.PixelData != same.PixelData
    assert other.SOPInstanceUID != same.SOPInstanceUID


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patients": 0}, "patients must be at least 1"),
        ({"slices": 0}, "slices must be at least 1"),
        ({"size": 16}, "size must be at least 32"),
        ({"dose": 0.0}, r"dose must be a fraction in \(0, 1\]"),
        ({"dose": 1.5}, r"dose must be a fraction in \(0, 1\]"),
        ({"dose": "0.5:0.1"}, r"or a range LOW:HIGH within it, got 0.5:0.1"),
        ({"dose": "0.1:0.2:0.3"}, "one range LOW:HIGH"),
        ({"dose": "low"}, "a range such as 0.1:0.5"),
        ({"seed": -1}, "seed must be non-negative"),
        ({"from_dir": Path("/no/such/folder")}, "does not exist"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_dataset(tmp_path / "out", progress=None, **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_non_empty_output_folder_is_refused(dataset: Path) -> None:
    with pytest.raises(ValueError, match="is not empty"):
        simulate_dataset(dataset, progress=None)


def test_truth_is_the_noise_free_scan_written_outside_the_data_root(dataset: Path, tmp_path: Path) -> None:
    data, truth_dir = tmp_path / "data", tmp_path / "truth"
    report = simulate_dataset(data, patients=2, slices=3, size=64, seed=7, truth_dir=truth_dir, progress=None)
    assert report.truth_dir == truth_dir and not any("TRUTH" in p.parts for p in _dataset_files(data))
    for ours, theirs in zip(_dataset_files(data), _dataset_files(dataset), strict=True):  # same data as without truth
        assert ours.read_bytes() == theirs.read_bytes()
    truth_files = sorted(truth_dir.glob("SIM00?/TRUTH/*.dcm"))
    assert [p.relative_to(truth_dir).as_posix() for p in truth_files] == [
        f"SIM00{i}/TRUTH/000{n}.dcm" for i in (1, 2) for n in (1, 2, 3)
    ]
    noise: dict[str, list[float]] = {"NDCT": [], "LDCT": []}
    for path in truth_files:
        truth = pydicom.dcmread(path)
        assert truth.Modality == "CT" and "noise-free" in truth.SeriesDescription
        body = _hu(path) > -500
        for dose in noise:
            scan = pydicom.dcmread(data / path.parent.parent.name / dose / path.name)
            assert (
                scan.ImagePositionPatient == truth.ImagePositionPatient
                and scan.StudyInstanceUID == truth.StudyInstanceUID
            )
            difference = (_hu(data / path.parent.parent.name / dose / path.name) - _hu(path))[body]
            assert abs(difference.mean()) < 5
            noise[dose].append(difference.std())
    # 64 px over 380 mm are 5.9 mm pixels: half a HU of noise (variance goes as 1/Δx³), which the
    # whole-HU storage blurs; the noise level itself is tested on the physics below
    assert 0.3 < np.mean(noise["NDCT"]) < 40 and np.mean(noise["LDCT"]) > 1.3 * np.mean(noise["NDCT"])


@pytest.mark.parametrize(
    "truth, message", [("data/truth", "must lie outside the data folder"), (".", "must lie outside the data folder")]
)
def test_truth_inside_or_around_the_data_root_is_refused(tmp_path: Path, truth: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_dataset(tmp_path / "data", truth_dir=tmp_path / truth, progress=None)
    assert not (tmp_path / "data").exists()


# --- Phantom -------------------------------------------------------------------------------


def test_phantom_has_realistic_tissues_inside_the_scan_circle() -> None:
    size = 128
    anatomy = random_anatomy(np.random.default_rng(0))
    hu = render(anatomy, size, FOV_MM / size, 0.0)
    assert hu.shape == (size, size)
    assert np.all(hu[~fov_mask(size)] == -1000.0)
    for low, high in [(-1000, -990), (-880, -820), (-120, -80), (35, 65), (650, 1000)]:
        assert np.mean((hu >= low) & (hu <= high)) > 0.002, (low, high)
    neighbour = render(anatomy, size, FOV_MM / size, SLICE_THICKNESS_MM)
    far = render(anatomy, size, FOV_MM / size, 60.0)
    other = render(random_anatomy(np.random.default_rng(1)), size, FOV_MM / size, 0.0)
    step = np.abs(neighbour - hu).mean()
    assert step < np.abs(far - hu).mean() and step < np.abs(other - hu).mean()


# --- Physics ---------------------------------------------------------------------------------


def _ellipse_phantom(size: int, fill: float, fov_mm: float = FOV_MM) -> tuple[np.ndarray, np.ndarray]:
    """A 300 x 220 mm uniform ellipse of `fill` HU in air, and a central 60 mm ROI."""
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) * (fov_mm / size)
    hu = np.where((xx / 150) ** 2 + (yy / 110) ** 2 < 1, fill, -1000.0)
    return hu, xx**2 + yy**2 < 60**2


def test_fbp_needs_about_pi_over_2_views_per_pixel_of_width() -> None:
    assert [physics.views(size) for size in (64, 256, 512)] == [101, 403, 805]


def test_the_projector_agrees_with_skimages_radon() -> None:
    size = 128
    hu = render(random_anatomy(np.random.default_rng(1)), size, FOV_MM / size, 0.0)
    scan = physics.project(hu, FOV_MM / size)
    reference = radon(physics.hu_to_mu(hu), theta=scan.theta, circle=False) * (FOV_MM / size)
    assert scan.line_integrals.shape == reference.shape
    assert np.sqrt(np.mean((scan.line_integrals - reference) ** 2)) < 0.01 * np.sqrt(np.mean(reference**2))


def test_the_back_projection_is_skimages() -> None:
    """skimage's `iradon` without a filter, up to float32 rounding, on a sinogram of any values."""
    size = 96
    theta = np.linspace(0.0, 180.0, physics.views(size), endpoint=False)
    sinogram = np.random.default_rng(4).normal(size=(size + int(np.ceil(np.sqrt(2.0) * size - size)), len(theta)))
    reference = iradon(sinogram, theta=theta, filter_name=None, circle=False, output_size=size)
    back = tomography.backproject(sinogram, theta, size)
    assert np.sqrt(np.mean((back - reference) ** 2)) < 1e-5 * np.sqrt(np.mean(reference**2))


@pytest.mark.parametrize("fill", [0.0, 50.0])
def test_ldct_is_twice_as_noisy_and_mean_hu_is_preserved(fill: float) -> None:
    hu, roi = _ellipse_phantom(128, fill)
    scans = physics.rescan(hu, FOV_MM / 128, 3.0, 0.25, np.random.default_rng(3), noise_free=True)
    assert scans.reference is not None
    full, low = scans.ndct - scans.reference, scans.ldct - scans.reference
    assert 1.8 < low[roi].std() / full[roi].std() < 2.6
    assert abs(scans.ndct[roi].mean() - fill) < 3 and abs(scans.ldct[roi].mean() - fill) < 3


def test_noise_grows_as_pixels_shrink_and_does_not_depend_on_the_views() -> None:
    """FBP noise variance goes as 1/(fluence · thickness · Δx³): a field of view half as wide on
    the same matrix makes the noise 2^1.5 times larger."""
    stds = []
    for fov in (400.0, 200.0):
        yy, xx = (np.mgrid[:128, :128] - 63.5) * (fov / 128)
        water = np.where((xx / 90) ** 2 + (yy / 70) ** 2 <= 1, 0.0, -1000.0)  # the same 180 x 140 mm ellipse
        scans = physics.rescan(water, fov / 128, 3.0, 1.0, np.random.default_rng(1), noise_free=True)
        assert scans.reference is not None
        stds.append((scans.ndct - scans.reference)[xx**2 + yy**2 < 40**2].std())
    assert 2.83 * 0.8 < stds[1] / stds[0] < 2.83 * 1.25, stds


def test_full_dose_noise_at_the_reference_is_the_calibrated_one() -> None:
    """The 360 x 260 mm water ellipse's centre, with the standard kernel, at 3 mm slices: the
    calibrated noise carried to this pixel size by the Δx³ law."""
    size, spacing = 256, 400.0 / 256
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) * spacing
    water = np.where((xx / 180) ** 2 + (yy / 130) ** 2 <= 1, 0.0, -1000.0)
    scans = physics.rescan(water, spacing, 3.0, 1.0, np.random.default_rng(0), noise_free=True)
    assert scans.reference is not None
    centre = (xx / 180) ** 2 + (yy / 130) ** 2 <= 0.2**2
    expected = physics.FULL_DOSE_NOISE_HU * (physics.REF_SPACING_MM / spacing) ** 1.5
    assert (scans.ndct - scans.reference)[centre].std() == pytest.approx(expected, rel=0.2)


def test_smoother_kernels_give_coarser_noise() -> None:
    hu, _ = _ellipse_phantom(128, 0.0)
    scan = physics.project(hu, FOV_MM / 128)
    draw = np.random.default_rng(0).standard_normal(scan.line_integrals.shape)
    rois = flat_rois(np.where(hu > -500, 0.0, -1000.0))
    assert rois is not None
    grain = [measure(physics.noise_hu(draw, scan, k), rois, FOV_MM / 128).mean_frequency for k in physics.KERNELS]
    assert grain == sorted(grain) and grain[0] < 0.8 * grain[-1]  # smooth, standard, sharp


def test_anatomy_in_the_corners_is_scanned_not_cut() -> None:
    size = 96
    hu = np.full((size, size), 40.0)  # tissue up to every edge, as a large patient in a small field of view
    scans = physics.rescan(hu, 2.0, 3.0, 0.25, np.random.default_rng(0), noise_free=True)
    assert scans.reference is not None
    corner = (slice(4, 16), slice(4, 16))
    assert abs(scans.reference[corner].mean() - 40.0) < 5


def test_aec_raises_the_dose_for_a_large_patient_only() -> None:
    """A 440 × 320 mm water ellipse (a large adult abdomen) would be photon-starved at the
    nominal dose: AEC raises it, so its noise stays clinical; a phantom keeps the nominal dose."""
    size, spacing = 128, 500 / 128
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) * spacing
    large = np.where((xx / 220) ** 2 + (yy / 160) ** 2 <= 1, 0.0, -1000.0)
    inner = (xx / 180) ** 2 + (yy / 120) ** 2 <= 1
    scans = physics.rescan(large, spacing, 3.0, 0.25, np.random.default_rng(0), noise_free=True)
    assert scans.reference is not None
    scan = physics.project(large, spacing)
    i0 = physics.bin_photons(spacing, 3.0, len(scan.theta))
    starved = physics.reconstruct(
        physics.acquire(scan, i0, np.sqrt(physics.ELECTRONIC_RATIO * i0), np.random.default_rng(0)), scan
    )
    assert 4 < scans.aec_gain <= physics.AEC_MAX_GAIN
    assert (scans.ndct - scans.reference)[inner].std() < 0.6 * (starved - scans.reference)[inner].std()
    phantom = render(random_anatomy(np.random.default_rng(0)), size, FOV_MM / size, 0.0)
    assert physics.rescan(phantom, FOV_MM / size, 3.0, 0.25, np.random.default_rng(0)).aec_gain == 1.0


# --- Noise insertion for real sources --------------------------------------------------------


@pytest.fixture(scope="module")
def real_like() -> tuple[np.ndarray, np.ndarray, float]:
    """A stand-in for a real full-dose scan: a 300 x 220 mm soft-tissue ellipse with a bone disc,
    scanned once at full dose with the smooth kernel at a clinical pixel size, so that it carries
    a scanner's kind of noise; and that noise alone (the scan less its noise-free reconstruction)."""
    size, spacing = 192, 1.6
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) * spacing
    hu = np.where((xx / 150) ** 2 + (yy / 110) ** 2 <= 1, 40.0, -1000.0)
    hu[(xx - 60) ** 2 + yy**2 <= 20**2] = 700.0
    scans = physics.rescan(hu, spacing, 3.0, 1.0, np.random.default_rng(5), noise_free=True, kernel="smooth")
    assert scans.reference is not None
    return scans.ndct, scans.ndct - scans.reference, spacing


def test_insertion_keeps_the_source_as_ndct_and_adds_the_noise_of_the_lower_dose(real_like) -> None:
    source, own_noise, spacing = real_like
    rois = flat_rois(source)
    assert rois is not None
    own = measure(source, rois, spacing)
    measured = physics.Measured(source, spacing, own, rois)
    scans = physics.insert(source, spacing, 3.0, 0.25, np.random.default_rng(0), "smooth", measured)
    np.testing.assert_array_equal(scans.ndct, np.clip(source, -1024, 3071))
    assert scans.reference is scans.ndct  # no noise-free truth exists: the NDCT is the reference
    added = measure(scans.ldct - scans.ndct, rois, spacing)
    assert added.sigma_hu**2 == pytest.approx(3.0 * own.sigma_hu**2, rel=0.15)  # (1/d − 1) σ²
    assert abs(float(np.mean(rois.patches(scans.ldct - scans.ndct)))) < 1.0
    assert added.mean_frequency == pytest.approx(measure(own_noise, rois, spacing).mean_frequency, rel=0.1)


@pytest.mark.parametrize("made_with", ["smoothest", "standard", "sharp"])
def test_the_matching_kernel_is_the_one_the_source_was_made_with_or_its_neighbour(made_with: str) -> None:
    """One slice's grain is measured to a few per cent and neighbouring kernels differ by 10 to 20 %:
    the choice may land one step off, never further."""
    size, spacing = 192, 1.6
    yy, xx = (np.mgrid[:size, :size] - (size - 1) / 2) * spacing
    hu = np.where((xx / 150) ** 2 + (yy / 110) ** 2 <= 1, 40.0, -1000.0)
    scans = physics.rescan(hu, spacing, 3.0, 1.0, np.random.default_rng(5), noise_free=True, kernel=made_with)
    assert scans.reference is not None
    rois = flat_rois(scans.ndct)
    assert rois is not None
    own = measure(scans.ndct - scans.reference, rois, spacing)
    chosen = physics.matching_kernel([physics.Measured(scans.ndct, spacing, own, rois)])
    order = list(physics.KERNELS)
    assert abs(order.index(chosen) - order.index(made_with)) <= 1, chosen


def test_real_sources_are_written_with_their_kernel_and_the_ndct_as_reference(tmp_path: Path) -> None:
    source = tmp_path / "source" / "P1"
    simulate_dataset(source, patients=1, slices=2, size=96, seed=2, progress=None)  # stands for a real scan
    report = simulate_dataset(
        tmp_path / "data", from_dir=source, size=96, truth_dir=tmp_path / "truth", progress=None, seed=1
    )
    [(name, patient)] = report.patients.items()
    assert patient.kernel in physics.KERNELS
    for number in (1, 2):
        ndct = tmp_path / "data" / name / "NDCT" / f"{number:04d}.dcm"
        reference = tmp_path / "truth" / name / "TRUTH" / f"{number:04d}.dcm"
        assert pydicom.dcmread(ndct).ConvolutionKernel == patient.kernel.upper()
        assert "reference" in pydicom.dcmread(reference).SeriesDescription
        np.testing.assert_array_equal(_hu(reference), _hu(ndct))


# --- dose range ----------------------------------------------------------------------------


def test_a_dose_range_is_drawn_per_slice_and_recorded(tmp_path: Path) -> None:
    report = simulate_dataset(tmp_path / "a", patients=2, slices=4, size=32, seed=3, dose="0.1:0.5", progress=None)
    doses = [d for patient in report.patients.values() for d in patient.doses]
    assert len(doses) == 8 and len(set(doses)) == 8 and all(0.1 <= d <= 0.5 for d in doses)
    for name, patient in report.patients.items():
        for number, dose in enumerate(patient.doses, start=1):
            low = pydicom.dcmread(tmp_path / "a" / name / "LDCT" / f"{number:04d}.dcm")
            full = pydicom.dcmread(tmp_path / "a" / name / "NDCT" / f"{number:04d}.dcm")
            assert low.ExposureInuAs / full.ExposureInuAs == pytest.approx(dose, abs=1e-5)
            assert low.XRayTubeCurrent == round(full.XRayTubeCurrent * dose)
            assert low.Exposure == round(full.Exposure * dose)
            assert low.SeriesDescription == "LDCT 10%-50% dose (simulated)"
    again = simulate_dataset(tmp_path / "b", patients=2, slices=4, size=32, seed=3, dose="0.1:0.5", progress=None)
    assert again.as_json()["patients"] == report.as_json()["patients"]
    other = simulate_dataset(tmp_path / "c", patients=2, slices=4, size=32, seed=4, dose="0.1:0.5", progress=None)
    assert other.as_json()["patients"] != report.as_json()["patients"]


def test_a_lower_drawn_dose_is_a_noisier_slice(tmp_path: Path) -> None:
    """The drawn dose reaches the physics, not only the header: noise follows each slice's dose."""
    report = simulate_dataset(tmp_path / "d", patients=1, slices=6, size=64, seed=1, dose="0.05:0.9", progress=None)
    doses = report.patients["SIM001"].doses
    noise = [
        np.std(_hu(tmp_path / f"d/SIM001/LDCT/{n:04d}.dcm") - _hu(tmp_path / f"d/SIM001/NDCT/{n:04d}.dcm"))
        for n in range(1, 7)
    ]
    assert np.corrcoef(np.log(doses), np.log(noise))[0, 1] < -0.9


# --- --from DICOM_DIR ------------------------------------------------------------------------


def _real_slices(folder: Path, name: str, positions: list[float], patient_id: str | None) -> None:
    """Copies of one of pydicom's clinical CT files at `positions`, as one series of a source patient."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, z in enumerate(positions, start=1):
        ds = pydicom.dcmread(pydicom_file(name))
        ds.ImagePositionPatient = [0, 0, z]
        ds.SliceLocation = z
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = UID(f"{ds.SOPInstanceUID}.{number}")
        if patient_id is None:
            del ds.PatientID
        else:
            ds.PatientID = patient_id
        ds.save_as(folder / f"{number:03d}.dcm")


def test_from_dir_makes_one_simulated_patient_per_source_patient(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _real_slices(source / "head", "CT_small.dcm", [10.0 * i for i in range(9)], "PAT-1")
    _real_slices(source / "spine", "693_UNCR.dcm", [-4.0, -2.0, 0.0], "PAT 2/b")
    _real_slices(source / "head-again", "CT_small.dcm", [100.0, 110.0], "PAT-1")  # one person, two folders
    _real_slices(source / "anonymous", "CT_small.dcm", [0.0, 5.0], None)  # no PatientID: its top folder
    (source / "README.txt").write_text("not DICOM")
    lines: list[str] = []
    report = simulate_dataset(
        tmp_path / "out",
        slices=3,
        size=48,
        seed=2,
        from_dir=source,
        truth_dir=tmp_path / "truth",
        progress=lines.append,
    )
    assert list(report.patients) == ["anonymous", "PAT-1", "PAT_2_b"]
    assert {n: (p.source, len(p.doses)) for n, p in report.patients.items()} == {
        "anonymous": ("anonymous/", 2),
        "PAT-1": ("head/, head-again/", 3),
        "PAT_2_b": ("spine/", 3),
    }
    assert "simulate: patient anonymous from anonymous/: 2 of 2 slices, all it has (asked for 3)" in lines
    assert any(
        line.startswith("simulate: skipped 1 files of ") and "README.txt: not a DICOM file" in line for line in lines
    )
    for name in report.patients:
        ids = {pydicom.dcmread(f).PatientID for f in (tmp_path / "out" / name).rglob("*.dcm")}
        assert ids == {name}
    # 11 slices of PAT-1 in z order (0..80, 100, 110): three spread over all of them, not the first three
    spread = [
        float(pydicom.dcmread(tmp_path / f"out/PAT-1/NDCT/{n:04d}.dcm").ImagePositionPatient[2]) for n in (1, 2, 3)
    ]
    assert spread == [10.0, 50.0, 100.0]
    ds = pydicom.dcmread(tmp_path / "out/PAT_2_b/LDCT/0001.dcm")
    original = pydicom.dcmread(source / "spine/001.dcm")
    assert ds.pixel_array.shape == (48, 48)
    assert float(ds.PixelSpacing[0]) == pytest.approx(float(original.PixelSpacing[0]) * original.Rows / 48)
    truth = _hu(tmp_path / "truth/PAT-1/TRUTH/0001.dcm")
    head = _hu(source / "head/002.dcm")
    small = resize(np.clip(head, -1024, None), (48, 48), anti_aliasing=True, preserve_range=True)
    inside = fov_mask(48)
    assert np.corrcoef(truth[inside], small[inside])[0, 1] > 0.9


def test_from_dir_refuses_more_patients_than_it_holds(tmp_path: Path) -> None:
    source = tmp_path / "source"
    _real_slices(source / "a", "CT_small.dcm", [0.0, 3.0], "A")
    _real_slices(source / "b", "CT_small.dcm", [0.0, 3.0], "B")
    with pytest.raises(ValueError, match="--patients 3: --from folder .* holds 2 source patients"):
        simulate_dataset(tmp_path / "out", patients=3, from_dir=source, progress=None)
    assert not (tmp_path / "out").exists()
    report = simulate_dataset(tmp_path / "one", patients=1, size=32, from_dir=source, progress=None)
    assert list(report.patients) == ["A"] and report.files_written == 4
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "notes.txt").write_text("no CT here")
    with pytest.raises(ValueError, match="holds no readable CT slices"):
        simulate_dataset(tmp_path / "empty", from_dir=empty, progress=None)


def test_the_two_clinical_series_stay_two_patients(tmp_path: Path) -> None:
    """The demo's real subset (two TCIA patients, ctdenoise/data/realct) through the command line."""
    summary = tmp_path / "simulate.json"
    assert (
        main(
            [
                "simulate",
                "--from",
                str(REAL_CT),
                "--out",
                str(tmp_path / "d"),
                "--dose",
                "0.1:0.5",
                "--size",
                "32",
                "--slices",
                "2",
                "--summary",
                str(summary),
            ]
        )
        == 0
    )
    patients = json.loads(summary.read_text())["patients"]
    assert {name: p["source"] for name, p in patients.items()} == {
        "TCGA-09-2043": "TCGA-09-2043/",
        "TCGA-E3-A3E5": "TCGA-E3-A3E5/",
    }
    assert all(0.1 <= d <= 0.5 for p in patients.values() for d in p["doses"])


def test_the_kernel_chosen_from_one_back_projection_is_the_one_per_kernel_back_projections_choose():
    """`kernel_noise` windows one ramp back-projection in the image instead of back-projecting once
    per kernel; on each shipped patient's middle slice the grains agree with the exact ones within
    2 %, and `matching_kernel` chooses as the exact grains would."""
    from ctdenoise.simulator.dataset import measured_source
    from ctdenoise.simulator.sources import find_patients, ground_truth

    for patient in find_patients(REAL_CT).patients:
        refs = patient.spread(None)
        source = measured_source(ground_truth(refs[len(refs) // 2], 256))
        assert source is not None
        scan = physics.project(source.hu, source.pixel_spacing_mm)
        draw = physics.unit_quantum_noise(scan, np.random.default_rng(0))
        grain = {
            kernel: measure(image, source.rois, source.pixel_spacing_mm).mean_frequency
            for kernel, image in physics.kernel_noise(draw, scan).items()
        }
        exact = {
            kernel: measure(physics.noise_hu(draw, scan, kernel), source.rois, source.pixel_spacing_mm).mean_frequency
            for kernel in physics.KERNELS
        }
        assert grain == pytest.approx(exact, rel=0.02)
        target = source.noise.mean_frequency
        assert physics.matching_kernel([source]) == min(exact, key=lambda kernel: abs(exact[kernel] - target))
