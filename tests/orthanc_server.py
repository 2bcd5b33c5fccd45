"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin on a free loopback
port, a throw-away storage folder, HTTP basic authentication with one user, and a Lua filter
that refuses instances from a given InstanceNumber on while a flag file says so (how a test
makes a store fail half-way for real).

`.ci/run` installs the `orthanc` and `orthanc-dicomweb` packages when they are missing;
without them the fixture fails naming the packages. The server runs in a session of its own
and is stopped whatever happens to the tests. `rest` speaks Orthanc's own REST API, which
the product never uses: what the tests check through it is independent of the product's
DICOMweb code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests

from tests.servers import free_port, stop, wait_for_port

USER = "radiology"
PASSWORD = "0rthanc-Pa55word-of-the-tests"
"""Distinctive enough that finding it in any output is a leak."""
_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
_FILTER = """
function ReceivedInstanceFilter(dicom, origin, info)
   local flag = io.open("{flag}", "r")
   if flag == nil then return true end
   local first_refused = tonumber(flag:read("*l"))
   flag:close()
   return tonumber(dicom.InstanceNumber) < first_refused
end
"""


@dataclass
class OrthancServer:
    port: int
    reject_flag: Path
    folder: Path
    process: subprocess.Popen | None = None
    log: IO[bytes] | None = None

    def start(self) -> None:
        """Start the server on its port with its storage (kept across restarts)."""
        self.log = open(self.folder / "server.log", "a+b")  # noqa: SIM115  (closed by `stop`)
        self.process = subprocess.Popen(
            [_binary(), str(self.folder / "orthanc.json")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.process, self.port, self.log, "Orthanc")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
        if self.log is not None:
            self.log.close()
        self.process = self.log = None

    def restart(self) -> None:
        """Stop the server and start it again, as a PACS restart does: what it stored stays."""
        self.stop()
        self.start()

    @property
    def dicomweb(self) -> str:
        """The DICOMweb service as `ctdenoise` takes it."""
        return f"dicomweb+http://127.0.0.1:{self.port}/dicom-web"

    def rest(self, method: str, path: str, **kwargs) -> requests.Response:
        """Orthanc's REST API with the test user's credentials; raises on an HTTP error."""
        response = requests.request(
            method, f"http://127.0.0.1:{self.port}{path}", auth=(USER, PASSWORD), timeout=60, **kwargs
        )
        response.raise_for_status()
        return response

    def upload(self, paths: list[Path]) -> None:
        for path in paths:
            self.rest("POST", "/instances", data=path.read_bytes())

    def series_of(self, series_uid: str) -> dict:
        """Orthanc's record of one series (its instances and parent study), found by UID."""
        found = self.rest(
            "POST", "/tools/find", json={"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}, "Expand": True}
        ).json()
        assert len(found) == 1, f"{len(found)} series with UID {series_uid}"
        return found[0]

    def instance_count(self, series_uid: str) -> int:
        return len(self.series_of(series_uid)["Instances"])

    def derived_of(self) -> dict[str, list[str]]:
        """Each source series UID on the server → the series derived from it, read from the
        derived instances' SourceImageSequence (every instance's tags: for small servers)."""
        series_of_instance: dict[str, str] = {}
        made: dict[str, set[str]] = {}
        for series in self.rest("GET", "/series", params={"expand": ""}).json():
            uid = series["MainDicomTags"]["SeriesInstanceUID"]
            for instance in series["Instances"]:
                tags = self.rest("GET", f"/instances/{instance}/tags", params={"simplify": ""}).json()
                series_of_instance[tags["SOPInstanceUID"]] = uid
                for source in tags.get("SourceImageSequence", []):
                    made.setdefault(source["ReferencedSOPInstanceUID"], set()).add(uid)
        derived: dict[str, set[str]] = {}
        for source_instance, series_uids in made.items():
            derived.setdefault(series_of_instance[source_instance], set()).update(series_uids)
        return {source: sorted(uids) for source, uids in derived.items()}

    def refuse_from(self, instance_number: int | None) -> None:
        """Refuse stored instances whose InstanceNumber is at least this (None: accept all again)."""
        if instance_number is None:
            self.reject_flag.unlink(missing_ok=True)
        else:
            self.reject_flag.write_text(f"{instance_number}\n")


def _binary() -> str:
    found = shutil.which("Orthanc", path="/usr/sbin:/usr/bin")
    if found is None or not _PLUGIN.exists():
        raise RuntimeError(
            "Orthanc or its DICOMweb plugin not found: install Debian's orthanc and orthanc-dicomweb "
            "(apt-get install orthanc orthanc-dicomweb; .ci/run does this)"
        )
    return found


def start_orthanc() -> Generator[OrthancServer, None, None]:
    """A generator for a pytest fixture: a fresh, empty server, then (on teardown, also after
    failures) the server stopped and its storage removed."""
    folder = Path(tempfile.mkdtemp(prefix="ctdenoise-orthanc-"))
    port, flag = free_port(), folder / "refuse-from"
    (folder / "filter.lua").write_text(_FILTER.format(flag=flag))
    config = {
        "Name": "ctdenoise-tests",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "LuaScripts": [str(folder / "filter.lua")],
        "Plugins": [str(_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    server = OrthancServer(port, flag, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
