"""`ctdenoise demo`: the whole product on real anatomy, start to finish.

Rescan the small real CT subset that ships inside the package (`ctdenoise/data/realct`, two patients
from TCIA) at low dose (once), run every pipeline stage with the `cpu-demo` preset, fine-tuning the
shipped base model of the paired model (`MODEL`) on that data, then denoise the held-out
patient's LDCT series with the base and with the pushed model (or with the candidate the gate
refused, said so) and save a LDCT | base | fine-tuned | NDCT picture of its middle slice.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tfx.utils import path_utils

from ctdenoise.app.base_models import matching_overrides
from ctdenoise.app.denoise import DenoiseReport, denoise_series
from ctdenoise.app.display import labelled_panels
from ctdenoise.contract.features import at_position
from ctdenoise.dicomio.reader import read_ct_slices
from ctdenoise.simulator.dataset import simulate_dataset
from ctdenoise.trainer_module.hparams import HParams
from ctdenoise.trainer_module.models import configure

REAL_CT = Path(__file__).resolve().parents[1] / "data" / "realct"
"""Two clinical series (neck and chest, abdomen): one patient trains, the other is held out.
Package data, so an installed wheel runs the demo outside a checkout."""
MODEL = "red_cnn"
"""The model the demo fine-tunes from its shipped base (`cpu-demo` otherwise): its data pairs every
LDCT slice with the NDCT of the same slice, for which the family's paired model is the README's
choice. The default `cycle_identity` needs more steps than fit the demo's 10 minutes on a 2-core
AVX2 CPU to pass the gate (docs/experiments.md, "Why the training step ran at half speed on AVX2")."""
BASE_VERSION = "base (shipped)"
"""How the base model's derived series name it: the package's own, not a pushed version."""
REPORT_FILE = "report.html"
"""The demo's `ctdenoise report` page, in the run root."""
DATASET: dict[str, Any] = {"size": 256, "dose": "0.1:0.5", "seed": 0}
"""Every slice of both patients at 256 px, each scanned at a dose drawn from 10-50 %, as
tube-current modulation varies it along a real scan."""


def overrides(preset: str) -> list[str]:
    """The `--set` items of the demo's training at `preset`: `MODEL` with its base model's
    architecture, so that the demo fine-tunes the base at every preset (`tiny` too, whose own
    sizes are smaller); the preset sets the schedule."""
    named = [f"model={MODEL}"]
    return [*named, *matching_overrides(configure(preset, named))]


def hparams(preset: str) -> HParams:
    """The demo's hyperparameters at `preset` (`overrides`)."""
    return configure(preset, overrides(preset))


class DemoError(RuntimeError):
    """The demo could not finish; the message says why in one line."""


def data_dir(root: Path) -> Path:
    return root / "demo-data"


def _made_with(root: Path) -> Path:
    """The settings the demo data under `root` was simulated with, beside it (not inside the
    data root, where ingestion would list it as a file outside the layout)."""
    return root / "demo-data.json"


def ensure_dataset(root: Path, say: Callable[[str], None]) -> Path:
    """The demo's simulated DICOM data under `root`, written on the first run only (into a
    staging folder renamed when complete, so an interrupted first run is not reused)."""
    data, made = data_dir(root), _made_with(root)
    wanted = {**DATASET, "from": REAL_CT.name}
    if data.is_dir() and made.is_file() and json.loads(made.read_text()) == wanted:
        say(f"demo: using the simulated data in {data}")
        return data
    if not REAL_CT.is_dir():
        raise DemoError(f"the demo's real CT subset {REAL_CT} is missing: reinstall ctdenoise")
    shutil.rmtree(data, ignore_errors=True)  # an earlier demo's data, made with other settings
    staging = data.with_name(f".{data.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted run
    simulate_dataset(staging, from_dir=REAL_CT, progress=say, **DATASET)
    staging.rename(data)
    made.write_text(json.dumps(wanted))
    say(f"demo: simulated data ready in {data}")
    return data


def showcase(summary: dict[str, Any], data: Path, root: Path, start: Path, say: Callable[[str], None]) -> Path:
    """Denoise the first eval patient's LDCT series (from `data`) into `root` with the model
    training started from (`start`, the base) and with the pushed model, or, when the gate refused
    it, with the trained candidate (said so, never pushed): the demo shows what came out either
    way. Return the path of a LDCT | base | fine-tuned | NDCT PNG of its middle slice."""
    push = summary.get("push") or {}
    if push.get("pushed"):
        model, version, label = push["path"], push["version"], "fine-tuned"
    else:
        model_uri = (summary.get("train") or {}).get("model_uri")
        if not model_uri:
            raise DemoError("training produced no model: see the output above")
        model, version = path_utils.serving_model_dir(model_uri), "candidate (not blessed)"
        label = "fine-tuned (not blessed)"
        say(
            "demo: the gate refused the model (its reasons are above), so nothing was pushed; "
            "showing the trained candidate beside the base anyway"
        )
    patient = sorted(summary["evaluation"]["per_patient"])[0]
    ldct, shown = data / patient / "LDCT", root / "demo-denoised"
    reports = {
        "base": _denoise(start, ldct, shown / f"{patient}-base", BASE_VERSION, say),
        label: _denoise(model, ldct, shown / patient, version, say),
    }
    return _side_by_side(reports, data / patient, shown / f"{patient}_ldct_base_finetuned_ndct.png")


def _denoise(model: str | Path, ldct: Path, out: Path, version: str, say: Callable[[str], None]) -> DenoiseReport:
    shutil.rmtree(out, ignore_errors=True)  # the demo's own output of an earlier run
    return denoise_series(model, ldct, out, png=False, model_version=version, progress=say)


def _side_by_side(reports: dict[str, DenoiseReport], series: Path, png: Path) -> Path:
    """Middle slice of the series: LDCT | each of `reports`' outputs, labelled by its key | NDCT
    (same z) in a soft-tissue window."""
    middles = {}
    for label, report in reports.items():
        outputs = sorted(report.out_dir.glob("*.dcm"))
        middles[label] = read_ct_slices(outputs[len(outputs) // 2], label)[0]
    z = next(iter(middles.values())).z
    denoised = {label: record.hu for label, record in middles.items()}
    labelled_panels({"LDCT": _at_z(series / "LDCT", z), **denoised, "NDCT": _at_z(series / "NDCT", z)}).save(png)
    return png


def _at_z(folder: Path, z: float | None) -> np.ndarray:
    """HU of the slice at position `z` among the files of `folder`."""
    records = (record for path in sorted(folder.glob("*.dcm")) for record in read_ct_slices(path, path.name))
    found = at_position(records, z)
    if found is None:
        raise DemoError(f"{folder}: no slice at z={z}")
    return found.hu
