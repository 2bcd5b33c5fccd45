"""Base models: denoisers that the product's own pipeline trains on every real patient whose
licence lets weights trained on it ship, kept in the package (`BASE_DIR/<model>/`), so that
`denoise --model base` works on a fresh install and `run --warm-start base` fine-tunes one
(docs/design.md, "Base models").

`ctdenoise train-base` (`make base-models`) rescans the patients of SOURCES with the simulator
(`RECIPE`: noise of a dose drawn per slice inserted into each full-dose slice), runs the
pipeline to push with `deterministic=true`, and replaces `BASE_DIR/<model>/` with:
- the pushed SavedModel and its metadata file, as the Pusher wrote them;
- PROVENANCE_FILE: the command and commit that made it, the CPU, the wall time, the recipe and
  hyperparameters, the sources with their licences, what was left out and why, and the gate's
  figures;
- LINEAGE_FILE: its ML Metadata lineage, as `ctdenoise lineage --json` prints it;
- MODEL_CARD_FILE: `ctdenoise report`'s page about it.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ctdenoise.app.machine import cpu_flags, cpu_model

BASE_DIR = Path(__file__).resolve().parents[1] / "data" / "base"
PAIRED_BASE = "red_cnn"
"""The README's choice for paired data, and the base `denoise --model base` uses."""
PRETRAINING: dict[str, list[str]] = {
    PAIRED_BASE: [],
    "cycle_identity": [
        "paired=true",
        "supervised_lambda=10",
        "adversarial_weight=0",
        "cycle_lambda=0",
        "tanh_output=false",
    ],
}
"""The models a base is made for, each with the overrides of the recipe's preset it trains with.
The CycleGANs' generators learn from pairs alone: G by the supervised term (and the identity
term on NDCT), F by the identity term; no adversary and no cycle, whose term would have G keep
its input's noise for F to find; without the output tanh, which holds paired generators back
at every air edge (docs/design.md, "Base models")."""
BASE_OF = {"cyclegan": "cycle_identity"}
"""Models that start from another model's base: the plain CycleGAN has the cycle-identity one's
generators."""
PROVENANCE_FILE, LINEAGE_FILE, MODEL_CARD_FILE = "provenance.json", "lineage.json", "model_card.html"
SOURCES = {
    "TCGA-09-2043": "TCIA TCGA-OV, DOI 10.7937/K9/TCIA.2016.NDO1MDFQ, CC BY 3.0 (cite the collection and DOI; "
    "do not try to identify the participants)",
    "TCGA-E3-A3E5": "TCIA TCGA-THCA, DOI 10.7937/K9/TCIA.2016.9ZFRVF1B, CC BY 3.0 (cite the collection and DOI; "
    "do not try to identify the participants)",
    "GE-HEAD": "dcm_qa_ct by Chris Rorden, data provided by Aliza Medical Imaging, BSD-2-Clause (keep the notice)",
    "TS-ABDOMEN": "TotalSegmentator's test data, Apache-2.0 (keep the notice)",
}
"""The real patients a base model trains on (folders of a real-CT root laid out as ../shared/realct),
each with its source, licence and what the licence asks of whoever ships weights trained on it."""
LEFT_OUT = {
    "INV-0051": "GPL-2: whether weights trained on it are a work based on it is not settled, so they stay out",
}
RECIPE: dict[str, Any] = {"size": 512, "slices": 24, "dose": "0.1:0.5", "seed": 0, "preset": "cpu-30min"}
"""How the base models are made: each source patient at 512 px (its own pixel size, as users'
scans), 24 slices spread over its length, each at a dose drawn from 10-50 %, seed 0, trained at the
`cpu-30min` preset."""


class BaseModelError(ValueError):
    """No base model for what was asked, or no sources to make one from; one line says which."""


def base_model(model: str) -> Path:
    """The shipped base model of `model`; BaseModelError, naming what ships, when there is none."""
    folder = BASE_DIR / BASE_OF.get(model, model)
    if not (folder / "saved_model.pb").is_file():
        shipped = [p.name for p in sorted(BASE_DIR.glob("*")) if (p / "saved_model.pb").is_file()]
        raise BaseModelError(f"no base model ships for {model} (shipped: {', '.join(shipped) or 'none'})")
    return folder


def starting_point(hp: Any) -> Path:
    """The base model a run with hyperparameters `hp` can start from (`run --warm-start base`):
    BaseModelError in one line when none ships for its model, or when its architecture fields
    (the model's own sizing fields, such as channels and kernel, and its SHAPE_FIELDS, such as
    the output tanh) differ from the base's, naming both and the `--set` that matches."""
    folder, made, differ = _architecture(hp)
    if differ:
        base = ", ".join(f"{name}={made['hparams'].get(name)}" for name in differ)
        ours = ", ".join(f"{name}={getattr(hp, name)}" for name in differ)
        raise BaseModelError(
            f"the base {made['hparams']['model']} has {base} (preset {made['recipe']['preset']}), this run {ours}: "
            f"--set {' '.join(_set_items(made, differ))}, or choose a preset of the same size"
        )
    return folder


def matching_overrides(hp: Any) -> list[str]:
    """The `--set` items that give a run with hyperparameters `hp` its base model's architecture
    (none when it has it already): how the demo fine-tunes the base at any preset."""
    _, made, differ = _architecture(hp)
    return _set_items(made, differ)


def _set_items(made: dict[str, Any], fields: list[str]) -> list[str]:
    """`name=value` for each of `fields` as the base (provenance `made`) was trained with."""
    return [f"{name}={json.dumps(made['hparams'].get(name))}" for name in fields]


def _architecture(hp: Any) -> tuple[Path, dict[str, Any], list[str]]:
    """The base model of `hp`'s model, its provenance, and the architecture fields in which `hp`
    differs from the hyperparameters it was trained with."""
    from ctdenoise.trainer_module import hparams as hparams_lib

    folder = base_model(hp.model)
    made = json.loads((folder / PROVENANCE_FILE).read_text())
    params = type(hp)
    own = hparams_lib.own_fields(params)
    fields = [name for name in (*hparams_lib.size_fields(params), *params.SHAPE_FIELDS) if name in own]
    return folder, made, [name for name in fields if made["hparams"].get(name) != getattr(hp, name)]


def stage_sources(realct: Path, staging: Path) -> Path:
    """`staging` holding a link to each SOURCES patient of `realct` and nothing else, so that the
    simulator reads exactly them; BaseModelError when one is missing."""
    missing = [name for name in SOURCES if not (realct / name).is_dir()]
    if missing:
        raise BaseModelError(
            f"{realct}: no {', '.join(missing)}: base models train on every one of {', '.join(SOURCES)}"
        )
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in SOURCES:
        (staging / name).symlink_to((realct / name).resolve(), target_is_directory=True)
    return staging


def ship(
    push_path: str,
    out: Path,
    model: str,
    provenance: dict[str, Any],
    lineage: dict[str, Any],
    write_card: Callable[[str], Any],
) -> Path:
    """Replace `out/model` with the pushed SavedModel at `push_path` and what says how it was made;
    built beside it and renamed into place, so a failure leaves the old one whole."""
    target, staging = out / model, out / f".{model}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(push_path, staging)
    (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")
    (staging / LINEAGE_FILE).write_text(json.dumps(lineage, indent=1, sort_keys=True) + "\n")
    write_card(str(staging / MODEL_CARD_FILE))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def provenance(
    command: list[str],
    started: datetime.datetime,
    seconds: float,
    recipe: dict[str, Any],
    hparams: dict[str, Any],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """What PROVENANCE_FILE records (the module's docstring)."""
    evaluation = summary.get("evaluation") or {}
    return {
        "command": command,
        "commit": commit(),
        "cpu": {"model": cpu_model(), "vector_features": cpu_flags(), "cores": os.cpu_count()},
        "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(seconds),
        "recipe": recipe,
        "hparams": hparams,
        "sources": SOURCES,
        "left_out": LEFT_OUT,
        "evaluation": {"patients": sorted(evaluation.get("per_patient") or {}), "overall": evaluation.get("overall")},
    }


def commit() -> str:
    """The checkout's commit, with "+modified" when tracked files differ from it; "unknown" outside a
    git checkout (an installed wheel)."""
    checkout = Path(__file__).resolve().parents[2]
    try:
        head = _git(checkout, "rev-parse", "HEAD")
        changed = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+modified" if changed else "")


def _git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True
    ).stdout.strip()
