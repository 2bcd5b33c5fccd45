"""A DICOMweb service through dicomweb-client: the searches, reads and stores the commands
need, each failure turned into one line that names the host and never a credential.

Credentials: CTDENOISE_DICOMWEB_USER and CTDENOISE_DICOMWEB_PASSWORD when set (HTTP basic),
else whatever the user's netrc file (`~/.netrc`, or `$NETRC`) holds for the host, which
requests reads by itself. Requests that the server answers with 408, 429, 503 or 504 are
retried (dicomweb-client's back-off, RETRY_ATTEMPTS tries in all); a timeout is not, and no
request of a call (a search, an instance read, a store batch) starts after CALL_DEADLINE_S
(`session`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from pydicom import Dataset

from ctdenoise.dicomweb_io.address import PASSWORD_VARIABLE, USER_VARIABLE, DicomwebAddress

TIMEOUT_S = (10.0, 120.0)
"""Seconds to connect, and to wait for each read of an answer."""
CALL_DEADLINE_S = 300.0
"""Seconds after which no request of one call starts, and its answer's reading stops between chunks."""
RETRY_ATTEMPTS = 3
_RETRY_WAIT_MS = 500
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")
_FAILED_SOP_SEQUENCE = "FailedSOPSequence"
_UNAVAILABLE = (408, 429)
_PLAIN = re.compile(r"[A-Za-z0-9._-]*")
_CREDENTIALS_HINT = f"set {USER_VARIABLE} and {PASSWORD_VARIABLE}, or a netrc entry for the host"


class DicomwebError(RuntimeError):
    """A DICOMweb request that failed; the message is one line without credentials.
    `transient` says the server could not be reached or was unavailable (a refused
    connection, a timeout, HTTP 408, 429 or 5xx): the same request may succeed later, where a
    refusal of the request itself will not."""

    def __init__(self, message: str, *, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class SeriesEntry:
    """One series a QIDO-RS search found, with the attributes it was asked for."""

    study: str
    series: str
    attributes: Dataset


class Pacs:
    """The DICOMweb service of `address` (its study and series parts are ignored here)."""

    def __init__(self, address: DicomwebAddress):
        from dicomweb_client.api import DICOMwebClient

        from ctdenoise.dicomweb_io.session import DeadlineSession

        session = self._session = DeadlineSession()
        user, password = os.environ.get(USER_VARIABLE, ""), os.environ.get(PASSWORD_VARIABLE, "")
        if bool(user) != bool(password):
            raise DicomwebError(f"{address.host}: set both {USER_VARIABLE} and {PASSWORD_VARIABLE}, or neither")
        if user:
            session.auth = (user, password)
        self.host = address.host
        self._credentials = bool(user) or _netrc_has(address.host)
        self._client = DICOMwebClient(address.base, session=session, timeout=TIMEOUT_S)
        self._client.set_http_retry_params(max_attempts=RETRY_ATTEMPTS, wait_exponential_multiplier=_RETRY_WAIT_MS)

    def series(
        self,
        fields: Sequence[str],
        *,
        study: str = "",
        series: str = "",
        patient: str = "",
        modality: str = "",
        study_date: str = "",
    ) -> list[SeriesEntry]:
        """The series matching the filters given, each with `fields` (keywords) filled in where the server has them.
        `study_date` is a DICOM date or range (YYYYMMDD-: that day on), for the server to narrow by.

        A PatientID other than letters, digits, '.', '_' and '-' is matched here rather than by
        the server, which then lists every series in scope (narrow it by study): some servers
        (Orthanc's DICOMweb plugin 1.7) do not decode percent-escapes in a query, so they find
        nothing for a value with a space, a slash or a wildcard in it."""
        plain = patient if _PLAIN.fullmatch(patient) else ""
        filters = {"SeriesInstanceUID": series, "PatientID": plain, "Modality": modality, "StudyDate": study_date}
        with self._request("search for series"):
            found = _every_page(
                functools.partial(
                    self._client.search_for_series,
                    study_instance_uid=study or None,
                    fields=[*fields, "PatientID"] if patient else list(fields),
                    search_filters={k: v for k, v in filters.items() if v},
                )
            )
        entries = [Dataset.from_json(item) for item in found]
        return [
            SeriesEntry(
                self._uid(ds, "StudyInstanceUID", "search for series"),
                self._uid(ds, "SeriesInstanceUID", "search for series"),
                ds,
            )
            for ds in entries
            if not patient or ds.get("PatientID") == patient
        ]

    def instances(self, study: str, series: str) -> list[str]:
        """The SOP Instance UIDs of one series (an empty list for an unknown series)."""
        with self._request(f"search for the instances of series {series}"):
            found = _every_page(
                functools.partial(
                    self._client.search_for_instances, study_instance_uid=study, series_instance_uid=series
                )
            )
        what = f"search for the instances of series {series}"
        return [self._uid(Dataset.from_json(item), "SOPInstanceUID", what) for item in found]

    def retrieve(self, study: str, series: str, instance: str) -> Dataset:
        with self._request(f"read instance {instance}"):
            return self._client.retrieve_instance(study, series, instance)

    def store(self, datasets: Sequence[Dataset], study: str) -> None:
        """STOW-RS `datasets` into `study`; DicomwebError if the server stored any of them not."""
        with self._request(f"store into study {study}"):
            answer = self._client.store_instances(list(datasets), study_instance_uid=study)
        failed = answer.get(_FAILED_SOP_SEQUENCE) if answer is not None else None
        if failed:
            reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
            raise DicomwebError(
                f"{self.host}: the server refused {len(failed)} of {len(datasets)} instances "
                f"(failure reason {', '.join(reasons)})"
            )

    @contextlib.contextmanager
    def _request(self, what: str) -> Iterator[None]:
        """Requests' and HTTP errors as DicomwebError, one line each."""
        import requests
        import retrying

        self._session.deadline = time.monotonic() + CALL_DEADLINE_S
        try:
            yield
        except retrying.RetryError as exc:  # dicomweb-client gave up retrying a 408, 429, 503 or 504
            last = exc.last_attempt
            response = None if last.has_exception else last.value
            raise DicomwebError(
                f"{self._http_reason(what, response)} ({last.attempt_number} attempts)", transient=True
            ) from None
        except requests.exceptions.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            raise DicomwebError(
                self._http_reason(what, exc.response), transient=code in _UNAVAILABLE or code >= 500
            ) from None
        except requests.exceptions.Timeout:
            raise DicomwebError(
                f"{self.host}: no whole answer to '{what}' in time (each read may wait {TIMEOUT_S[1]:g} s, "
                f"a call {CALL_DEADLINE_S:g} s)",
                transient=True,
            ) from None
        except requests.exceptions.ConnectionError as exc:
            found = _ERRNO.search(str(exc))
            reason = found[1].strip() if found else type(exc).__name__
            raise DicomwebError(f"{self.host}: cannot reach the DICOMweb server ({reason})", transient=True) from None
        except requests.exceptions.RequestException as exc:
            raise DicomwebError(f"{self.host}: {what} failed ({type(exc).__name__})") from None
        finally:
            self._session.deadline = None

    def _uid(self, ds: Dataset, keyword: str, what: str) -> str:
        """A UID the server's QIDO-RS answer must carry; a server that leaves it out is named."""
        value = str(ds.get(keyword, "") or "")
        if not value:
            raise DicomwebError(f"{self.host}: the answer to '{what}' lacks {keyword}, which QIDO-RS requires")
        return value

    def _http_reason(self, what: str, response) -> str:
        code = response.status_code if response is not None else 0
        if code in (401, 403):
            refused = "refused the credentials" if self._credentials else "needs credentials"
            return f"{self.host}: the DICOMweb server {refused} (HTTP {code}); {_CREDENTIALS_HINT}"
        if code == 404:
            return f"{self.host}: {what}: not found on the server (HTTP 404)"
        reason = response.reason if response is not None else ""
        return f"{self.host}: {what} failed with HTTP {code} {reason}".rstrip()


def _every_page(search: Callable[..., list[dict]]) -> list[dict]:
    """Every result of a QIDO-RS search, a page at a time from `offset` 0. A server that ignores
    `offset` answers with results already seen: that ends the search, where dicomweb-client's
    own paging (`get_remaining`) would ask again for ever."""
    results: list[dict] = []
    seen: set[str] = set()
    while True:
        page = search(offset=len(results))
        fresh = [item for item in page if json.dumps(item, sort_keys=True) not in seen]
        if not fresh:
            return results
        seen.update(json.dumps(item, sort_keys=True) for item in fresh)
        results += fresh


def _netrc_has(host: str) -> bool:
    """Whether the user's netrc file has an entry for `host` (as requests would use it)."""
    from requests.utils import get_netrc_auth

    return get_netrc_auth(f"http://{host}/") is not None
