"""Where DICOM files live under a data root, and which split each patient goes to.

Default layout: ``DATA/<patient_id>/<LDCT|NDCT>/...`` (docs/design.md, "Data contract"). Dose folder names and
the file-name pattern are configurable, so the AAPM Low Dose CT Grand Challenge layout
(``L067/quarter_3mm/*.IMA``, ``L067/full_3mm/*.IMA``) works too.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import asdict, dataclass, field

from ctdenoise.storage.files import list_tree


@dataclass(frozen=True)
class Layout:
    """Dose folder names (below the patient folder) and the file-name glob to ingest."""

    ldct_dirs: tuple[str, ...] = ("LDCT",)
    ndct_dirs: tuple[str, ...] = ("NDCT",)
    pattern: str = "*"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        raw = json.loads(text)
        return cls(tuple(raw["ldct_dirs"]), tuple(raw["ndct_dirs"]), raw["pattern"])

    def dose_of(self, folder: str) -> str | None:
        if folder in self.ldct_dirs:
            return "ldct"
        if folder in self.ndct_dirs:
            return "ndct"
        return None


@dataclass(frozen=True)
class FoundFile:
    """A file the layout says holds one dose of one patient; `rel_path` is POSIX, relative to the root."""

    rel_path: str
    patient_id: str
    dose: str


@dataclass
class Scan:
    """Every file under the root: the ones to read, and the ones the layout already rejects."""

    found: list[FoundFile] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)

    @property
    def patients(self) -> set[str]:
        return {f.patient_id for f in self.found}

    @property
    def patients_with_both_doses(self) -> set[str]:
        """Patients with files of both doses: the only ones that can yield co-located pairs."""
        doses: dict[str, set[str]] = {}
        for f in self.found:
            doses.setdefault(f.patient_id, set()).add(f.dose)
        return {patient for patient, found in doses.items() if len(found) > 1}


def scan(root: str, layout: Layout) -> Scan:
    """Classify each file under `root` (a folder or an object-store URL) by the layout,
    rejecting those outside it, and every entry that holds no readable file, with a reason."""
    listing = list_tree(root)
    result = Scan(rejected=list(listing.problems))
    for rel in listing.files:
        parts = rel.split("/")
        dose = layout.dose_of(parts[1]) if len(parts) >= 3 else None
        if dose is None:
            expected = "|".join(layout.ldct_dirs + layout.ndct_dirs)
            result.rejected.append({"path": rel, "reason": f"not under <patient>/<{expected}>/"})
        elif not fnmatch.fnmatch(parts[-1], layout.pattern):
            result.rejected.append({"path": rel, "reason": f"name does not match '{layout.pattern}'"})
        else:
            result.found.append(FoundFile(rel, parts[0], dose))
    return result


def assign_splits(patients: set[str], eval_fraction: float) -> dict[str, str]:
    """Split by patient, never slice by slice: patients ranked by a hash of their id, the
    first round(n·fraction) (at least one when there are two or more) go to `eval`.

    Deterministic for a given patient set, and both splits are non-empty whenever possible,
    which small clinical cohorts need.
    """
    ranked = sorted(patients, key=lambda p: hashlib.sha256(p.encode()).hexdigest())
    n_eval = round(len(ranked) * eval_fraction)
    if len(ranked) >= 2:
        n_eval = min(max(n_eval, 1), len(ranked) - 1)
    return {p: ("eval" if i < n_eval else "train") for i, p in enumerate(ranked)}
