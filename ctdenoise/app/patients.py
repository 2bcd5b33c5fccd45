"""Which patient each folder of a pulled data root holds, and under what name.

`pull` names a patient's folder by a keyed pseudonym of its PatientID by default: "P" and 12
hex digits of HMAC-SHA256(key, PatientID). The folder name becomes the patient id of the
examples, the metrics and the report, so a medical record number never reaches them. With
`keep_patient_id` the folder is the PatientID made safe as a name, as before pseudonyms.

The key and the mapping from folder to PatientID live in one file beside the data root,
`<root>.patients.json`, never inside it (ingestion would list it, and a copy of the data
root would carry it), readable by its owner only: whoever holds it can re-identify the
patients, whoever holds only the data root cannot. The mapping is also what keeps two
people apart: a folder is never given a second PatientID, in this pull or any later one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAPPING_SUFFIX = ".patients.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_PSEUDONYM_HEX = 12


def mapping_path(root: Path) -> Path:
    """The mapping file of data root `root`: beside it, not in it."""
    return root.with_name(root.name + MAPPING_SUFFIX)


class PatientFolders:
    """Folder names for the PatientIDs of one data root, recorded in its mapping file."""

    def __init__(self, root: Path, keep_patient_id: bool = False):
        self.root, self.keep_patient_id, self.path = root, keep_patient_id, mapping_path(root)

    def folder(self, patient_id: str) -> tuple[str | None, str]:
        """(the folder for `patient_id`, "") or (None, why not): an empty PatientID, or a folder
        that holds another patient's series (the reason never names a PatientID)."""
        patient = patient_id.strip()
        if not patient:
            return None, "its PatientID is empty"
        with self._mapping() as mapping:
            name = _UNSAFE.sub("_", patient) if self.keep_patient_id else self._pseudonym(mapping["key"], patient)
            if name in (".", ".."):
                return None, "its PatientID is not a folder name"
            owner = mapping["folders"].get(name)
            if owner is None and _has_files(self.root / name):
                return None, f"folder {name} holds series of a patient that {self.path.name} does not name"
            if owner not in (None, patient):
                return None, f"folder {name} holds another PatientID's series"
            mapping["folders"][name] = patient
        return name, ""

    @staticmethod
    def _pseudonym(key: str, patient: str) -> str:
        digest = hmac.new(bytes.fromhex(key), patient.encode(), hashlib.sha256).hexdigest()
        return f"P{digest[:_PSEUDONYM_HEX]}"

    @contextlib.contextmanager
    def _mapping(self) -> Iterator[dict[str, Any]]:
        """The mapping, read and written back under an exclusive lock: concurrent pulls into
        one data root see each other's folders. A new mapping gets a new random key."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(descriptor, "r+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            text = handle.read()
            try:
                mapping: dict[str, Any] = (
                    json.loads(text) if text.strip() else {"key": secrets.token_hex(32), "folders": {}}
                )
                bytes.fromhex(mapping["key"]), dict(mapping["folders"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{self.path}: not a ctdenoise patient mapping ({type(exc).__name__}); restore it, or pull "
                    "into a new data root"
                ) from None
            before = json.dumps(mapping, sort_keys=True)
            yield mapping
            if json.dumps(mapping, sort_keys=True) != before:
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(mapping, indent=1, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(path.is_file() for path in folder.rglob("*"))
