"""CT image-quality measures (benchmarks/ct_measures.py) against known answers, and the QA
phantom (ctdenoise/simulator/qa_phantom.py) they are meant to be measured on (docs/design.md, "Reference, noise,
texture and resolution")."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from benchmarks import ct_measures as cm
from ctdenoise.contract.hu import HU_MIN
from ctdenoise.simulator.phantom import AIR_HU, FOV_MM, fov_mask, random_anatomy, render
from ctdenoise.simulator.physics import Scans, rescan
from ctdenoise.simulator.qa_phantom import RODS_MM, Rod, qa_slice

SIZE = 256
PIXEL_MM = FOV_MM / SIZE
GAUSSIAN_MTF50 = np.sqrt(np.log(2) / 2) / np.pi
"""MTF50 × σ of a Gaussian blur: exp(-2π²σ²f²) = 0.5 at f = sqrt(ln 2 / 2) / (π σ) cycles/px."""
DISC_CENTRE, DISC_RADIUS = (47.3, 48.6), 30.0


def blurred_disc(sigma_px: float, size: int = 96, supersample: int = 8) -> np.ndarray:
    """A 100 HU disc on 0 HU, blurred by a Gaussian of `sigma_px`, anti-aliased by rendering
    and blurring on a grid `supersample` times finer and averaging back to pixels (so each
    pixel also integrates over its own area, a box of variance 1/12 px²)."""
    fine = (np.arange(size * supersample) + 0.5) / supersample - 0.5
    rows, cols = np.meshgrid(fine, fine, indexing="ij")
    disc = 100.0 * ((rows - DISC_CENTRE[0]) ** 2 + (cols - DISC_CENTRE[1]) ** 2 <= DISC_RADIUS**2)
    blurred = ndimage.gaussian_filter(disc, sigma_px * supersample)
    return blurred.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def disc_mtf50(image: np.ndarray) -> float:
    """MTF50 of the disc edge in cycles/px (pixel_mm = 1)."""
    return cm.mtf50(*cm.mtf_from_esf(*cm.edge_spread(image, DISC_CENTRE, DISC_RADIUS), 1.0))


@pytest.fixture(scope="module")
def qa_scan() -> tuple[np.ndarray, list[Rod], Scans]:
    """The QA phantom at 256 px scanned once at dose 0.25, with its noise-free scan."""
    hu, rods = qa_slice(SIZE, PIXEL_MM)
    return hu, rods, rescan(hu, PIXEL_MM, 3.0, 0.25, np.random.default_rng(0), noise_free=True)


# --- regions -------------------------------------------------------------------------------


def discs(size: int = 96) -> np.ndarray:
    """Air around a 40 HU body of radius 30 px holding a -800 HU lung (radius 8) and a 700 HU bone (radius 5)."""
    rows, cols = np.mgrid[:size, :size]

    def disc(centre: tuple[int, int], radius: float) -> np.ndarray:
        return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2

    truth = np.full((size, size), -1000.0)
    truth[disc((48, 48), 30)] = 40.0
    truth[disc((40, 40), 8)] = -800.0
    truth[disc((58, 58), 5)] = 700.0
    return truth


def test_truth_regions_partition_the_slice_with_edges_at_the_body_outline() -> None:
    truth = discs()
    regions = cm.truth_regions(truth)
    assert np.array_equal(sum(m.astype(int) for m in regions.values()), np.ones(truth.shape, dtype=int))
    body = truth > -500
    outline = body & ~ndimage.binary_erosion(body)
    assert np.all(regions["edges"][outline]) and 8 <= regions["edges"][51].sum() <= 10  # 2 crossings, 2 px either side
    assert regions["lungs"].any() and not regions["lungs"][40, 40 - 6 : 40 + 7].all()  # the lung's rim is edge
    assert regions["bone"].sum() == np.sum(truth > 300)  # bone is not the body's outline
    assert np.all(truth[regions["air"]] == -1000.0) and np.all(truth[regions["soft tissue"]] == 40.0)


def test_region_errors_put_an_edge_error_at_the_edges() -> None:
    from benchmarks.quality_scores import region_errors
    from benchmarks.quality_sets import Images

    truth = discs()[None]
    regions = cm.truth_regions(truth[0])
    output = truth + 30.0 * regions["edges"] - 20.0 * regions["lungs"]
    scores = region_errors(output, Images(ldct=truth, ndct=truth, truth=truth))
    assert scores["edges_rmse"] == pytest.approx(30.0) and scores["edges_bias"] == pytest.approx(30.0)
    assert scores["lungs_bias"] == pytest.approx(-20.0) and scores["soft_tissue_rmse"] == 0.0
    assert scores["edges_share"] + scores["lungs_share"] == pytest.approx(1.0)
    clipped = region_errors(truth - 500.0 * regions["air"], Images(ldct=truth, ndct=truth, truth=truth))
    assert clipped["air_rmse"] == pytest.approx(-1000.0 - HU_MIN)  # below the window's floor, PSNR sees the floor


# --- noise ---------------------------------------------------------------------------------


def test_uniform_mask_selects_organ_interiors_away_from_edges() -> None:
    anatomy = random_anatomy(np.random.default_rng(0))
    phantom = render(anatomy, SIZE, PIXEL_MM, 0.0)
    truth = rescan(phantom, PIXEL_MM, 3.0, 0.25, np.random.default_rng(0), noise_free=True).reference
    assert truth is not None
    mask = cm.uniform_mask(truth)
    heart, liver = anatomy.organs[2:]
    organs = (np.abs(phantom - heart.hu) < 8) | (np.abs(phantom - liver.hu) < 8)
    cores = ndimage.binary_erosion(organs, iterations=8)
    disc = ndimage.generate_binary_structure(2, 1)
    near_range = ndimage.maximum_filter(phantom, footprint=ndimage.iterate_structure(disc, 4)) - ndimage.minimum_filter(
        phantom, footprint=ndimage.iterate_structure(disc, 4)
    )
    assert mask.sum() > 1000
    assert mask[cores].mean() > 0.75  # most of the liver and heart interiors are in (0.86)
    assert np.all(phantom[mask] > -200) and near_range[mask].max() < 30  # no tissue edge within 4 px


def test_noise_std_ignores_the_structure_and_a_bias() -> None:
    rng = np.random.default_rng(1)
    truth = render(random_anatomy(rng), 128, FOV_MM / 128, 0.0)
    image = truth + 7.0 + rng.normal(0.0, 10.0, truth.shape)
    assert cm.noise_std(image, truth, truth > -500) == pytest.approx(10.0, rel=0.03)


def test_white_noise_nps_is_flat_and_integrates_to_the_variance() -> None:
    pixel_mm, sigma = 0.7, 12.0
    noise = np.random.default_rng(2).normal(0.0, sigma, (2, 256, 256))
    mask = np.ones((256, 256), dtype=bool)
    freq, nps2d, n_rois = cm.nps_2d(noise, mask, 32, pixel_mm)
    assert n_rois == 2 * 15 * 15  # half-overlapping tiles of both slices
    assert freq.min() == pytest.approx(-1 / (2 * pixel_mm)) and np.sum(freq == 0) == 1
    assert nps2d.sum() * (freq[1] - freq[0]) ** 2 == pytest.approx(noise.var(), rel=0.03)
    radial_freq, radial = cm.nps(noise, mask, 32, pixel_mm)
    assert radial_freq[-1] == pytest.approx(1 / (2 * pixel_mm)) and radial[0] == pytest.approx(0, abs=1e-9)
    assert radial[1:] == pytest.approx(np.full(16, sigma**2 * pixel_mm**2), rel=0.15)
    # flat over rings 1…16 (ring 0 is the removed mean): mean frequency 8.5 rings of 16
    assert cm.nps_mean_frequency(radial_freq, radial) == pytest.approx(8.5 / 16 * radial_freq[-1], rel=0.05)


def test_smoothing_moves_the_nps_to_low_frequencies() -> None:
    noise = np.random.default_rng(3).normal(0.0, 10.0, (128, 128))
    mask = np.ones(noise.shape, dtype=bool)
    white = cm.nps(noise, mask, 32, 1.0)
    smooth = cm.nps(ndimage.gaussian_filter(noise, 1.5), mask, 32, 1.0)
    assert cm.nps_mean_frequency(*smooth) < 0.5 * cm.nps_mean_frequency(*white)
    assert cm.nps_peak_frequency(*smooth) <= 0.1 < cm.nps_peak_frequency(*white)


def test_nps_needs_an_roi_inside_the_mask() -> None:
    mask = np.zeros((64, 64), dtype=bool)
    mask[8:40, 8:40] = True  # 32 px wide, but no 32 px tile on the 16 px grid fits
    with pytest.raises(ValueError, match="no 32×32 px ROI"):
        cm.nps(np.zeros((64, 64)), mask, 32, 1.0)
    assert cm.nps_2d(np.zeros((64, 64)), mask, 16, 1.0)[2] == 9  # 16 px tiles every 8 px


# --- resolution ------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [1.5, 2.0])
def test_gaussian_blur_gives_the_gaussian_mtf50_and_edge_rise(sigma: float) -> None:
    image = blurred_disc(sigma)
    distance, esf = cm.edge_spread(image, DISC_CENTRE, DISC_RADIUS)
    assert np.diff(distance) == pytest.approx(np.full(distance.size - 1, 0.1))
    assert esf[0] == pytest.approx(100, abs=1) and esf[-1] == pytest.approx(0, abs=1)
    freq, mtf = cm.mtf_from_esf(distance, esf, 0.5)
    assert mtf[0] == 1.0 and freq[-1] == pytest.approx(2.0, rel=0.01)  # up to 1 cycle/px of 0.5 mm
    assert cm.mtf50(freq, mtf) * 0.5 == pytest.approx(GAUSSIAN_MTF50 / sigma, rel=0.05)
    # the pixel's own area adds 1/12 px² to the blur's variance; with it the match is exact
    assert cm.mtf50(freq, mtf) * 0.5 == pytest.approx(GAUSSIAN_MTF50 / np.hypot(sigma, np.sqrt(1 / 12)), rel=0.015)
    assert cm.edge_rise_10_90(distance, esf, 0.5) == pytest.approx(2.563 * sigma * 0.5, rel=0.05)


def test_more_blur_lowers_mtf50_and_moderate_noise_barely_moves_it() -> None:
    mtf50s = [disc_mtf50(blurred_disc(sigma)) for sigma in (0.8, 1.2, 1.6)]
    assert mtf50s[0] > mtf50s[1] > mtf50s[2]
    noisy = blurred_disc(1.2) + np.random.default_rng(4).normal(0.0, 10.0, (96, 96))
    assert disc_mtf50(noisy) == pytest.approx(mtf50s[1], rel=0.10)


def test_mtf50_interpolates_and_is_nan_when_never_reached() -> None:
    freq = np.linspace(0, 1, 11)
    assert cm.mtf50(freq, 1 - 0.8 * freq) == pytest.approx(0.625)
    assert np.isnan(cm.mtf50(freq, np.ones(11)))


def test_edge_band_must_stay_inside_the_insert_and_the_esf_be_oversampled() -> None:
    with pytest.raises(ValueError, match="band_px"):
        cm.edge_spread(np.zeros((32, 32)), (16.0, 16.0), 6.0, band_px=8.0)
    with pytest.raises(ValueError, match="oversampled"):
        cm.mtf_from_esf(*cm.edge_spread(np.zeros((32, 32)), (16.0, 16.0), 12.0, bin_px=0.5), 1.0)


# --- QA phantom --------------------------------------------------------------------------------


def test_qa_slice_is_a_water_cylinder_with_rods_inside_the_scan_circle() -> None:
    hu, rods = qa_slice(SIZE, PIXEL_MM)
    assert hu.shape == (SIZE, SIZE) and np.all(hu[~fov_mask(SIZE)] == AIR_HU)
    assert [rod.hu for rod in rods] == [hu_ for _, _, hu_ in RODS_MM]
    assert hu[SIZE * 3 // 4, SIZE // 2] == pytest.approx(0.0)  # water below the rods
    for rod in rods:
        assert hu[round(rod.centre_px[0]), round(rod.centre_px[1])] == pytest.approx(rod.hu)
        assert rod.radius_px == pytest.approx(12.5 / PIXEL_MM)
    with pytest.raises(ValueError, match="does not fit"):
        qa_slice(64, 2.0)


def test_rods_keep_their_hu_and_a_plausible_mtf_in_the_noise_free_scan(qa_scan) -> None:
    _, rods, scans = qa_scan
    rows, cols = np.indices((SIZE, SIZE))
    for rod in rods:
        centre = np.hypot(rows - rod.centre_px[0], cols - rod.centre_px[1]) <= rod.radius_px / 2
        assert scans.reference[centre].mean() == pytest.approx(rod.hu, abs=3)
        distance, esf = cm.edge_spread(scans.reference, rod.centre_px, rod.radius_px)
        freq, mtf = cm.mtf_from_esf(distance, esf, PIXEL_MM)
        sharp = cm.mtf50(freq, mtf) * PIXEL_MM
        assert 0.1 < sharp < 1.0, rod
        assert 1.0 < cm.edge_rise_10_90(distance, esf, PIXEL_MM) / PIXEL_MM < 4.0, rod
        blurred = cm.edge_spread(ndimage.gaussian_filter(scans.reference, 1.0), rod.centre_px, rod.radius_px)
        assert cm.mtf50(*cm.mtf_from_esf(*blurred, PIXEL_MM)) * PIXEL_MM < 0.8 * sharp


def test_ldct_water_noise_is_about_twice_the_ndct_and_fbp_noise_is_not_blotchy(qa_scan) -> None:
    _, _, scans = qa_scan
    water = cm.uniform_mask(scans.reference) & (np.abs(scans.reference) < 30)
    assert water.sum() > 5000
    full = cm.noise_std(scans.ndct, scans.reference, water)
    low = cm.noise_std(scans.ldct, scans.reference, water)
    assert 1 < full < 40 and 1.6 < low / full < 2.6
    fbp = cm.nps(scans.ldct - scans.reference, water, 32, PIXEL_MM)
    smoothed = cm.nps(ndimage.gaussian_filter(scans.ldct, 1.0) - scans.reference, water, 32, PIXEL_MM)
    nyquist = 0.5 / PIXEL_MM
    assert 0.25 < cm.nps_mean_frequency(*fbp) / nyquist < 0.45  # the standard kernel's grain, a clinical one's
    assert cm.nps_mean_frequency(*smoothed) < cm.nps_mean_frequency(*fbp)
