"""`dicomweb+http(s)://HOST[:PORT]/PATH[/studies/UID[/series/UID]]`: a DICOMweb service, and
optionally one study or one series on it.

Credentials never come from the address: user information in it is refused (without echoing
it), so that a password cannot reach a shell history, a process list, a log or ML Metadata.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEME_PREFIX = "dicomweb+"
USER_VARIABLE = "CTDENOISE_DICOMWEB_USER"
PASSWORD_VARIABLE = "CTDENOISE_DICOMWEB_PASSWORD"
"""Where the DICOMweb credentials come from (else the user's netrc file, `ctdenoise.dicomweb_io.client`)."""
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UID_MAX = 64


class AddressError(ValueError):
    """A DICOMweb address that cannot be used; the message is one line."""


@dataclass(frozen=True)
class DicomwebAddress:
    """A DICOMweb service root (`base`, plain http(s)) and, optionally, a study and a series on it."""

    base: str
    study: str = ""
    series: str = ""

    @property
    def host(self) -> str:
        return urlsplit(self.base).netloc

    def __str__(self) -> str:
        path = self.base
        if self.study:
            path += f"/studies/{self.study}"
        if self.series:
            path += f"/series/{self.series}"
        return SCHEME_PREFIX + path


def shown(location: str, limit: int = 120) -> str:
    """`location` as an error line names it: whole when short, else its start and its length
    (an address of 5000 characters made an error of 5000)."""
    return location if len(location) <= limit else f"{location[:limit]}... ({len(location):,} characters)"


def is_dicomweb(location: str) -> bool:
    return location.startswith(SCHEME_PREFIX)


def parse(location: str) -> DicomwebAddress:
    """The address in `location`, or AddressError saying what is wrong with it."""
    if not is_dicomweb(location):
        raise AddressError(
            f"{shown(location)}: not a DICOMweb address (dicomweb+http://HOST:PORT/PATH[/studies/UID[/series/UID]])"
        )
    parts = urlsplit(location[len(SCHEME_PREFIX) :])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressError(
            f"{shown(location)}: a DICOMweb address starts dicomweb+http:// or dicomweb+https:// and names a host"
        )
    if parts.username is not None or parts.password is not None:
        raise AddressError(
            f"dicomweb address for {parts.hostname}: credentials in the address are refused; set "
            f"{USER_VARIABLE} and {PASSWORD_VARIABLE}, or a netrc entry for the host"
        )
    if parts.query or parts.fragment:
        raise AddressError(f"{shown(location)}: a DICOMweb address has no query or fragment")
    segments = parts.path.rstrip("/").split("/")
    root, study, series = _split_resources(location, segments)
    return DicomwebAddress(f"{parts.scheme}://{parts.netloc}{'/'.join(root)}", study, series)


def _split_resources(location: str, segments: list[str]) -> tuple[list[str], str, str]:
    """The service root's path segments, and the study and series UIDs after it."""
    if "studies" not in segments:
        return segments, "", ""
    at = segments.index("studies")
    rest = segments[at + 1 :]
    if len(rest) not in (1, 3) or (len(rest) == 3 and rest[1] != "series"):
        raise AddressError(f"{shown(location)}: expected .../studies/UID or .../studies/UID/series/UID at the end")
    for uid in rest[::2]:
        if not _UID.match(uid) or len(uid) > _UID_MAX:
            raise AddressError(
                f"{shown(location, 60)}: {shown(uid, 40)} is not a DICOM UID (digits and dots, at most {_UID_MAX})"
            )
    return segments[:at], rest[0], rest[2] if len(rest) == 3 else ""
