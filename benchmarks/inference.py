"""Inference: 512×512 slices/s of the exported generator through `ctdenoise denoise`'s model
path (SavedModel `serving_default`, HU float32 [N, 512, 512, 1], batch 4) vs scikit-image
non-local means and BM3D on the same slices, on this CPU.

Speed does not depend on the weights, so freshly initialised generators of the cpu-demo
and paper architectures are exported with the Trainer's `export_generator`. The first call
of a loaded model (graph optimisation, memory allocation) is timed apart.
"""

from __future__ import annotations

import resource
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import classical, common, datasets

TARGET = 10.0
BATCH = 4
FULL: dict[str, Any] = dict(size=512, model_s=10.0, paper_calls=1, classic_slices={"NLM": 4, "BM3D": 2})
QUICK: dict[str, Any] = dict(size=128, model_s=1.0, paper_calls=1, classic_slices={"NLM": 1, "BM3D": 1})
NLM_H, BM3D_SIGMA = 1.0, 2.0
"""Strength factors (× estimated sigma) for the timed runs; they barely change the speed.
The quality benchmark tunes them."""


def ldct_slices(data: datasets.DicomSet, n: int) -> np.ndarray:
    """`n` LDCT slices in HU, [n, H, W, 1] float32, as `denoise` feeds the model."""
    return hu_batch(sorted(data.root.glob("*/LDCT/*.dcm"))[:n])


def hu_batch(files: list[Path]) -> np.ndarray:
    """The slices of `files` in HU, [n, H, W, 1] float32, as `denoise` feeds the model."""
    from ctdenoise.dicomio.reader import read_ct_slices

    return np.stack([read_ct_slices(f, f.name)[0].hu for f in files]).astype(np.float32)[..., None]


def time_model(
    bench: common.Benchmark, name: str, model_dir, batch: np.ndarray, min_seconds: float, min_calls: int
) -> dict:
    model = classical.saved_model(model_dir)
    model(batch[:1, :64, :64])  # instantiate the signature's function on a small input
    _, first = common.timed(lambda: model(batch))
    rate = common.measure(lambda: model(batch), len(batch), min_seconds=min_seconds, min_calls=min_calls)
    bench.log(f"{name}: {rate.per_second:.2f} slices/s (first full batch {first:.1f} s)")
    return {
        "first_batch_s": round(first, 2),
        **rate.as_dict("slices"),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def time_classic(bench: common.Benchmark, name: str, denoise: classical.Denoiser, slices: np.ndarray) -> dict:
    denoise(slices[0, :64, :64, 0])  # imports, FFT plans
    images = iter(slices[..., 0])
    rate = common.measure(lambda: denoise(next(images)), 1, min_seconds=0.0, min_calls=len(slices))
    bench.log(f"{name}: {rate.per_second:.3f} slices/s")
    return rate.as_dict("slices")


def main() -> None:
    args = common.parse_args("benchmarks.inference", __doc__)
    common.quiet_tensorflow()
    sizes = QUICK if args.quick else FULL
    bench = common.Benchmark(args, "inference", "Inference: 512×512 slices/s, generator vs NLM and BM3D (CPU)")
    data = datasets.replicated(args.data, size=sizes["size"], patients=2, slices=2)
    slices = ldct_slices(data, BATCH)
    scratch = args.out / "scratch" / "inference"
    shutil.rmtree(scratch, ignore_errors=True)

    variants = {}
    for preset_name, min_seconds, min_calls in (
        ("cpu-demo", sizes["model_s"], 3),
        ("paper", 0.0, sizes["paper_calls"]),
    ):
        model_dir = classical.export_untrained(preset_name, scratch / preset_name)
        variants[f"generator {preset_name} (SavedModel, batch {BATCH})"] = time_model(
            bench, preset_name, model_dir, slices, min_seconds, min_calls
        )
    for name, denoise in (
        ("NLM (skimage, fast mode)", classical.nlm(NLM_H)),
        ("BM3D (bm3d package)", classical.bm3d(BM3D_SIGMA)),
    ):
        n = sizes["classic_slices"][name.split()[0]]
        variants[name] = time_classic(bench, name, denoise, slices[:n])

    rate = {name: v["slices_per_s"] for name, v in variants.items()}
    demo, paper = (
        rate[f"generator cpu-demo (SavedModel, batch {BATCH})"],
        rate[f"generator paper (SavedModel, batch {BATCH})"],
    )
    bm3d, nlm = rate["BM3D (bm3d package)"], rate["NLM (skimage, fast mode)"]
    bench.finish(
        params={
            "size_px": sizes["size"],
            "batch": BATCH,
            "nlm_h_factor": NLM_H,
            "bm3d_sigma_factor": BM3D_SIGMA,
            "nlm_patch": [classical.NLM_PATCH_SIZE, classical.NLM_PATCH_DISTANCE],
        },
        variants=variants,
        ratios=[
            common.Ratio("generator cpu-demo / BM3D slices/s", demo / bm3d, TARGET),
            common.Ratio("generator paper / BM3D slices/s", paper / bm3d, None),
            common.Ratio("generator cpu-demo / NLM slices/s", demo / nlm, None),
        ],
        notes=[
            "CPU only: no GPU was available to this session, so there are no GPU inference figures.",
            "NLM and BM3D run one slice at a time in one process (NLM is single-threaded; BM3D's "
            "transforms may use more threads); the generator batches 4 slices and TensorFlow uses every core.",
        ],
    )


if __name__ == "__main__":
    main()
