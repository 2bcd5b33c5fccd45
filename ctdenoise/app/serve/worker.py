"""One series through `serve`: read from the PACS, checked, denoised, stored into its study.

What can go wrong has three outcomes (`Outcome`): the series is done (stored, or skipped as a
derived series); it is put back to wait, with no failure counted, when the PACS is away or the
series changed while it was in hand; or it failed, for a reason that doing it again will not
cure by itself (a bad file, a refused store), which the journal counts.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ctdenoise.app.denoise import DenoiseError, LoadedModel, denoise_series
from ctdenoise.app.pacs import fetch_series, store_series
from ctdenoise.app.serve.journal import Entry
from ctdenoise.dicomio.derived import derived_reason
from ctdenoise.dicomweb_io.address import DicomwebAddress
from ctdenoise.dicomweb_io.client import DicomwebError, Pacs


@dataclass(frozen=True)
class Outcome:
    """How a series ended: `state` is "stored", "skipped", "requeue" or "failed"."""

    state: str
    reason: str = ""
    derived: str = ""
    slices: int = 0
    seconds: float = 0.0


def denoise_entry(
    entry: Entry,
    base: str,
    model_dir: str,
    model: LoadedModel,
    work: Path,
) -> Outcome:
    """Denoise the journalled series `entry` of the DICOMweb service at `base` with `model`
    (loaded from `model_dir`), its files under a temporary folder in `work`."""
    start = time.monotonic()
    address = DicomwebAddress(base, entry.study, entry.series)
    try:
        pacs = Pacs(address)
        instances = pacs.instances(entry.study, entry.series)
        first = pacs.retrieve(entry.study, entry.series, instances[0]) if instances else None
        derived = derived_reason(first) if first is not None else ""
        if derived:  # first: a derived series still being stored changes its count, and is never taken
            return Outcome("skipped", f"derived ({derived}), not a scan")
        if len(instances) != entry.instances:
            return Outcome("requeue", f"{len(instances)} instances on the server, {entry.instances} when it settled")
        with tempfile.TemporaryDirectory(dir=work) as folder:
            source = fetch_series(address, Path(folder) / "input", _quiet, instances, first)
            report = denoise_series(
                model_dir, source, Path(folder) / "derived", progress=None, loaded=model, batch_size=4
            )
            now = len(pacs.instances(entry.study, entry.series))
            if now != entry.instances:
                return Outcome(
                    "requeue", f"the series changed while it was denoised ({entry.instances} → {now} instances)"
                )
            store_series(pacs, report.out_dir, entry.study, report.series_uid, base, _quiet)
    except DicomwebError as exc:
        return Outcome("requeue" if exc.transient else "failed", str(exc))
    except DenoiseError as exc:
        return Outcome("failed", str(exc))
    return Outcome("stored", derived=report.series_uid, slices=report.slices, seconds=time.monotonic() - start)


def _quiet(_line: str) -> None:
    """Progress lines of the commands' own: the service logs one line per series instead."""
