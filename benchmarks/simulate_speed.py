"""Simulator speed at clinical size: `simulate --from` slices/s at 512 px on this CPU, and the
projection and back-projection it runs per slice against the Python loops over views they replaced
(a pixel-driven projector and skimage's `iradon`), in the same run.

    python -m benchmarks.simulate_speed --out benchmarks/results

The sources are the real patients that ship in the package (`ctdenoise/data/realct`, the demo's), resampled
to 512 px, noise of dose 0.25 inserted. `simulate` is timed twice as a user runs it, in one process: the
first run includes TensorFlow's start and XLA's compilation for the size, the second is the steady state.
The per-slice comparison times what noise insertion runs per slice (one projection, two back-projections
after the same filter) on REFERENCE_SLICES slices, each path on the same sinograms.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

TARGET_SLICES_PER_S = 1.0
REFERENCE_SLICES = 3
FULL: dict[str, Any] = dict(size=512, reference_slices=REFERENCE_SLICES)
QUICK: dict[str, Any] = dict(size=128, reference_slices=1)


def loop_projector(mu: np.ndarray, bins: int, theta_deg: np.ndarray) -> np.ndarray:
    """The replaced projector: each pixel shared between its two nearest bins, one view at a time."""
    size = mu.shape[0]
    rows, cols = np.mgrid[:size, :size] - size // 2
    flat = mu.ravel()
    sinogram = np.empty((bins, len(theta_deg)))
    for view, angle in enumerate(np.deg2rad(theta_deg)):
        position = (cols * np.cos(angle) - rows * np.sin(angle)).ravel() + bins // 2
        below = np.floor(position).astype(np.int64)
        share = position - below
        sinogram[:, view] = (
            np.bincount(below, flat * (1.0 - share), minlength=bins + 1)[:bins]
            + np.bincount(below + 1, flat * share, minlength=bins + 1)[:bins]
        )
    return sinogram


def kernel_choice_seconds(lines: list[tuple[float, str]]) -> float:
    """Seconds `simulate` spent choosing each patient's kernel, from its progress lines: from the
    line before each "…: kernel NAME" line to that line (once per patient, whatever its length)."""
    chosen = [i for i, (_, line) in enumerate(lines) if i and "noise" in line and ": kernel " in line]
    return sum(lines[i][0] - lines[i - 1][0] for i in chosen)


def timed_simulate(out: Path, source: Path, size: int) -> dict[str, float]:
    """One `simulate --from` run into `out`, timed, with its kernel choices timed apart."""
    from ctdenoise.simulator.dataset import simulate_dataset

    lines: list[tuple[float, str]] = []
    start = time.perf_counter()
    report = simulate_dataset(
        out,
        from_dir=source,
        size=size,
        dose="0.25",
        seed=0,
        progress=lambda line: lines.append((time.perf_counter(), line)),
    )
    seconds = time.perf_counter() - start
    pairs = sum(len(patient.doses) for patient in report.patients.values())
    choosing = kernel_choice_seconds(lines)
    return {
        "slices": pairs,
        "seconds": round(seconds, 2),
        "slices_per_s": round(pairs / seconds, 3),
        "kernel_choice_s": round(choosing, 2),
        "slices_per_s_without_kernel_choice": round(pairs / (seconds - choosing), 3),
    }


def per_slice_seconds(images: list[np.ndarray], project, backproject) -> float:
    """Mean seconds of one projection and two back-projections per slice."""
    from ctdenoise.simulator import physics

    start = time.perf_counter()
    for hu in images:
        size = hu.shape[0]
        theta = np.linspace(0.0, 180.0, physics.views(size), endpoint=False)
        bins = size + int(np.ceil(np.sqrt(2.0) * size - size))
        sinogram = project(physics.hu_to_mu(hu), bins, theta)
        for _ in range(2):
            backproject(sinogram, theta, size)
    return (time.perf_counter() - start) / len(images)


def main() -> None:
    args = common.parse_args("benchmarks.simulate_speed", __doc__)
    common.quiet_tensorflow()
    from skimage.transform import iradon

    from ctdenoise.app.demo import REAL_CT
    from ctdenoise.simulator import tomography

    sizes = QUICK if args.quick else FULL
    size = sizes["size"]
    bench = common.Benchmark(args, "simulate_speed", f"Simulator speed: `simulate --from` at {size} px")
    scratch = args.out / "scratch" / "simulate_speed"
    runs = {}
    for run in ("first (start and compilation included)", "steady state"):
        shutil.rmtree(scratch, ignore_errors=True)
        runs[run] = timed_simulate(scratch, REAL_CT, size)
        bench.log(
            f"simulate, {run}: {runs[run]['slices']} slices in {runs[run]['seconds']:.1f} s, "
            f"{runs[run]['kernel_choice_s']:.1f} s of it choosing kernels"
        )
    from ctdenoise.dicomio.reader import read_ct_slices

    files = sorted(scratch.glob("*/NDCT/*.dcm"))[:: max(1, len(list(scratch.glob("*/NDCT/*.dcm"))) // 4)]
    images = [read_ct_slices(f, f.name)[0].hu.astype(np.float64) for f in files[: sizes["reference_slices"]]]
    per_slice = {
        "XLA gathers (tomography)": per_slice_seconds(images, tomography.project, tomography.backproject),
        "loops over views (pixel-driven projector, skimage iradon)": per_slice_seconds(
            images,
            loop_projector,
            lambda s, theta, n: iradon(s, theta=theta, filter_name=None, circle=False, output_size=n),
        ),
    }
    for name, seconds in per_slice.items():
        bench.log(f"{name}: {seconds:.2f} s per slice (one projection, two back-projections)")
    shutil.rmtree(scratch, ignore_errors=True)
    new, old = (
        per_slice["XLA gathers (tomography)"],
        per_slice["loops over views (pixel-driven projector, skimage iradon)"],
    )
    steady = runs["steady state"]
    bench.finish(
        params={"size_px": size, "dose": 0.25, "reference_slices": len(images), "chunk_views": tomography.CHUNK},
        variants={
            **{f"simulate, {run}": values for run, values in runs.items()},
            **{name: {"seconds_per_slice": round(seconds, 3)} for name, seconds in per_slice.items()},
        },
        ratios=[
            common.Ratio(
                f"simulate --from at {size} px, steady state: slices/s",
                runs["steady state"]["slices_per_s"],
                TARGET_SLICES_PER_S,
            ),
            common.Ratio(
                f"simulate --from at {size} px, steady state, without the once-per-patient kernel choice: slices/s",
                runs["steady state"]["slices_per_s_without_kernel_choice"],
                None,
            ),
            common.Ratio("projection + 2 back-projections: loops over views / XLA seconds per slice", old / new, None),
        ],
        limits=[
            f"Of the steady run's {steady['seconds']:.1f} s, {steady['kernel_choice_s']:.1f} s chose the two patients' "
            "kernels (each on 3 slices with all 7 kernels); the rest, one projection and two back-projections per "
            f"slice ({new:.2f} s) plus reading, noise measurement and writing, runs at "
            f"{steady['slices_per_s_without_kernel_choice']:.2f} slices/s.",
        ]
        if steady["slices_per_s"] < TARGET_SLICES_PER_S
        else [],
        notes=[
            "simulate's slices/s counts LDCT/NDCT pairs written (reading, noise measurement and DICOM writing "
            "included).",
            "The first run includes TensorFlow's import and one XLA compilation per slice size.",
            "Each patient's kernel is chosen once, on three slices (a projection and one back-projection each, "
            "all seven kernels' windows applied to it): "
            "the shipped patients have 8 and 24 slices, so that choice weighs more here than on a clinical series.",
        ],
    )


if __name__ == "__main__":
    main()
