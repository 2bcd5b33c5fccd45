"""A PACS on either side of the product, for real: Debian's Orthanc with its DICOMweb plugin
on the loopback (tests/orthanc_server.py), authentication on. `ctdenoise pull` copies its
series into the data layout, `denoise` reads a series from it and stores the derived series
back, and what the server holds is checked through Orthanc's own REST API."""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tf_keras as keras

from ctdenoise.app.denoise import DenoiseError
from ctdenoise.app.pacs import denoise_location
from ctdenoise.app.pull import pull
from ctdenoise.contract.hu import HU_MAX, HU_MIN
from ctdenoise.contract.names import RESEARCH_LABEL
from ctdenoise.dicomweb_io import client
from ctdenoise.dicomweb_io.address import PASSWORD_VARIABLE, USER_VARIABLE, AddressError, parse
from ctdenoise.dicomweb_io.client import DicomwebError, Pacs
from ctdenoise.simulator.dataset import simulate_dataset
from tests import dicom_factory, orthanc_server
from tests.conftest import PERMISSIVE_GATE
from tests.dicom_validators import assert_dcmtk_reads, assert_no_new_iod_errors
from tests.limits import HANG_S
from tests.pipeline_helpers import assert_denoised_by, ctdenoise
from tests.saved_models import export_layer
from tests.servers import free_port

GEOMETRY = (
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "FrameOfReferenceUID",
    "StudyInstanceUID",
    "PatientID",
)


@pytest.fixture(scope="module")
def orthanc():
    yield from orthanc_server.start_orthanc()


@pytest.fixture
def credentials(monkeypatch):
    monkeypatch.setenv(USER_VARIABLE, orthanc_server.USER)
    monkeypatch.setenv(PASSWORD_VARIABLE, orthanc_server.PASSWORD)


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory) -> Path:
    return export_layer(tmp_path_factory.mktemp("models") / "identity", keras.layers.Identity())


def _upload_patient(orthanc, root: Path, patient: str, seed: int, study_date: str = "") -> dict[str, Path]:
    """A simulated patient (three 64² LDCT/NDCT slice pairs) stored in Orthanc, its study dated
    `study_date` (YYYYMMDD) if given; its dose folders."""
    simulate_dataset(root, patients=1, slices=3, size=64, seed=seed, progress=None)
    source = root / "SIM001"
    for path in source.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PatientID = patient
        ds.StudyDate = study_date or ds.StudyDate
        ds.save_as(path)
    orthanc.upload(sorted(source.rglob("*.dcm")))
    return {dose: source / dose for dose in ("LDCT", "NDCT")}


def _series_url(orthanc, folder: Path) -> str:
    ds = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    return f"{orthanc.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"


def _stored(orthanc, series_uid: str) -> list[pydicom.Dataset]:
    """The instances of a series as Orthanc holds them, read back as files, in InstanceNumber order."""
    record = orthanc.series_of(series_uid)
    files = [orthanc.rest("GET", f"/instances/{i}/file").content for i in record["Instances"]]
    datasets = [pydicom.dcmread(pydicom.filebase.DicomBytesIO(data)) for data in files]
    return sorted(datasets, key=lambda ds: int(ds.InstanceNumber))


def test_addresses_parse_and_credentials_in_them_are_refused_without_echo():
    address = parse("dicomweb+https://pacs.example:8042/dicom-web/studies/1.2.3/series/1.2.3.4")
    assert (address.base, address.study, address.series) == ("https://pacs.example:8042/dicom-web", "1.2.3", "1.2.3.4")
    assert str(address) == "dicomweb+https://pacs.example:8042/dicom-web/studies/1.2.3/series/1.2.3.4"
    assert parse("dicomweb+http://h/dicom-web/").base == "http://h/dicom-web"
    with pytest.raises(AddressError) as refused:
        parse("dicomweb+http://admin:hunter2@h:8042/dicom-web")
    assert "hunter2" not in str(refused.value) and USER_VARIABLE in str(refused.value)
    for bad, reason in (
        ("dicomweb+ftp://h/x", "dicomweb\\+http://"),
        ("dicomweb+http://h/x/studies/1.2/series", "at the end"),
        ("dicomweb+http://h/x/studies/abc", "not a DICOM UID"),
        ("dicomweb+http://h/x?q=1", "no query"),
    ):
        with pytest.raises(AddressError, match=reason):
            parse(bad)
    with pytest.raises(AddressError) as long_uid:
        parse("dicomweb+http://h/x/studies/" + "1" * 5000)
    assert len(str(long_uid.value)) < 250 and "(5,000 characters)" in str(long_uid.value)


def test_denoise_from_the_pacs_into_the_pacs_keeps_study_and_geometry(orthanc, credentials, identity_model, tmp_path):
    doses = _upload_patient(orthanc, tmp_path, "PACS1", seed=1)
    lines: list[str] = []
    report = denoise_location(
        str(identity_model), _series_url(orthanc, doses["LDCT"]), orthanc.dicomweb, progress=lines.append
    )
    stored = _stored(orthanc, report.series_uid)
    sources = sorted((pydicom.dcmread(p) for p in doses["LDCT"].glob("*.dcm")), key=lambda ds: int(ds.InstanceNumber))
    assert len(stored) == 3 and f"denoise: derived series {report.series_uid}" in lines[-1]
    for ds, src in zip(stored, sources, strict=True):
        assert ds.SOPInstanceUID != src.SOPInstanceUID and ds.SeriesInstanceUID != src.SeriesInstanceUID
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
        assert RESEARCH_LABEL in ds.SeriesDescription
        for keyword in GEOMETRY:
            assert ds.get(keyword) == src.get(keyword), keyword
        np.testing.assert_array_equal(
            ds.pixel_array, np.clip(pydicom.pixels.apply_rescale(src.pixel_array, src), HU_MIN, HU_MAX)
        )
    source_record = orthanc.series_of(sources[0].SeriesInstanceUID)
    assert orthanc.series_of(report.series_uid)["ParentStudy"] == source_record["ParentStudy"]
    derived = tmp_path / "derived.dcm"
    stored[0].save_as(derived)
    assert_no_new_iod_errors(sorted(doses["LDCT"].glob("*.dcm"))[0], derived)
    assert_dcmtk_reads(derived)


def test_store_that_fails_half_way_says_what_is_stored_and_the_same_command_completes_it(
    orthanc, credentials, identity_model, tmp_path
):
    doses = _upload_patient(orthanc, tmp_path, "PACS2", seed=2)
    url = _series_url(orthanc, doses["LDCT"])
    orthanc.refuse_from(3)
    try:
        with pytest.raises(
            DicomwebError,
            match="2 of the 3 instances of derived series .* are on the server: run the "
            "same command again to store the rest",
        ):
            denoise_location(str(identity_model), url, orthanc.dicomweb, progress=None)
    finally:
        orthanc.refuse_from(None)
    lines: list[str] = []
    report = denoise_location(str(identity_model), url, orthanc.dicomweb, progress=lines.append)
    assert f"denoise: 127.0.0.1:{orthanc.port} already holds 2 of the 3 instances" in lines
    assert len(orthanc.series_of(report.series_uid)["Instances"]) == 3
    denoise_location(str(identity_model), url, orthanc.dicomweb, progress=None)  # a third time: nothing new
    assert len(orthanc.series_of(report.series_uid)["Instances"]) == 3


def test_a_series_search_by_study_date_is_narrowed_by_the_server(orthanc, credentials, tmp_path):
    old = _upload_patient(orthanc, tmp_path / "old", "DATED1", seed=21, study_date="19990101")
    new = _upload_patient(orthanc, tmp_path / "new", "DATED2", seed=22, study_date="20300101")
    pacs = Pacs(parse(orthanc.dicomweb))
    found = {entry.series for entry in pacs.series(["StudyDate"], modality="CT", study_date="20290101-")}

    def uids(doses: dict[str, Path]) -> set[str]:
        return {pydicom.dcmread(next(folder.glob("*.dcm"))).SeriesInstanceUID for folder in doses.values()}

    assert uids(new) <= found and not uids(old) & found


def test_bad_input_on_the_pacs_is_refused_before_anything_is_stored(orthanc, credentials, identity_model, tmp_path):
    doses = _upload_patient(orthanc, tmp_path, "PACS3", seed=3)
    mr = pydicom.dcmread(sorted(doses["LDCT"].glob("*.dcm"))[1])
    mr.SOPInstanceUID = mr.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    mr.save_as(tmp_path / "mr.dcm")
    orthanc.upload([dicom_factory.make_non_ct(tmp_path / "mr.dcm")])
    study = orthanc.series_of(mr.SeriesInstanceUID)["ParentStudy"]
    before = orthanc.rest("GET", f"/studies/{study}").json()["Series"]
    with pytest.raises(DenoiseError, match=r"not CT \(modality MR\)"):
        denoise_location(str(identity_model), _series_url(orthanc, doses["LDCT"]), orthanc.dicomweb, progress=None)
    assert orthanc.rest("GET", f"/studies/{study}").json()["Series"] == before


def test_server_errors_are_one_line_and_never_show_the_password(orthanc, identity_model, monkeypatch, tmp_path):
    missing = f"{orthanc.dicomweb}/studies/1.2.3/series/1.2.3.4"
    cases = [
        (
            {USER_VARIABLE: orthanc_server.USER, PASSWORD_VARIABLE: "wrong-password"},
            missing,
            "refused the credentials \\(HTTP 401\\)",
        ),
        ({}, missing, f"needs credentials \\(HTTP 401\\); set {USER_VARIABLE}"),
        ({USER_VARIABLE: orthanc_server.USER, PASSWORD_VARIABLE: orthanc_server.PASSWORD}, missing, "no such series"),
        ({USER_VARIABLE: orthanc_server.USER}, missing, "set both"),
        (
            {},
            f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web/studies/1.2/series/1.3",
            "cannot reach the DICOMweb server \\(Connection refused\\)",
        ),
    ]
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for env, url, reason in cases:
        for name in (USER_VARIABLE, PASSWORD_VARIABLE):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises((DicomwebError, DenoiseError), match=reason) as failed:
            denoise_location(str(identity_model), url, str(tmp_path / "out"), progress=None)
        assert "\n" not in str(failed.value) and orthanc_server.PASSWORD not in str(failed.value)
        assert not (tmp_path / "out").exists()


def test_credentials_from_a_netrc_file(orthanc, identity_model, monkeypatch, tmp_path):
    doses = _upload_patient(orthanc, tmp_path / "data", "PACS4", seed=4)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {orthanc_server.USER} password {orthanc_server.PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for name in (USER_VARIABLE, PASSWORD_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    report = denoise_location(
        str(identity_model), _series_url(orthanc, doses["NDCT"]), str(tmp_path / "out"), progress=None
    )
    assert report.slices == 3 and len(list((tmp_path / "out").glob("*.dcm"))) == 3


def test_pull_copies_series_into_the_data_layout_and_resumes(orthanc, credentials, tmp_path):
    doses = _upload_patient(orthanc, tmp_path / "source", "PACS/5 b", seed=5)
    scout = pydicom.dcmread(sorted(doses["NDCT"].glob("*.dcm"))[0])
    scout.SeriesInstanceUID, scout.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    scout.file_meta.MediaStorageSOPInstanceUID = scout.SOPInstanceUID
    scout.SeriesDescription = "Topogram"
    scout.save_as(tmp_path / "scout.dcm")
    orthanc.upload([tmp_path / "scout.dcm"])
    data, lines = tmp_path / "data", list[str]()
    report = pull(orthanc.dicomweb, data, patient="PACS/5 b", keep_patient_id=True, progress=lines.append)
    assert (report.series, report.copied, report.present, report.patients) == (2, 6, 0, {"PACS_5_b"})
    assert report.skipped == [
        f"series {scout.SeriesInstanceUID}: its SeriesDescription matches neither of the dose patterns"
    ]
    for dose, folder in doses.items():
        pulled = {pydicom.dcmread(p).SOPInstanceUID: p for p in (data / "PACS_5_b" / dose).glob("*.dcm")}
        for source in folder.glob("*.dcm"):
            original = pydicom.dcmread(source)
            np.testing.assert_array_equal(
                pydicom.dcmread(pulled[original.SOPInstanceUID]).pixel_array, original.pixel_array
            )
    assert not any("PACS" in p.name or "SIM" in p.name for p in data.rglob("*.dcm"))
    first = sorted((data / "PACS_5_b" / "LDCT").glob("*.dcm"))[0]
    first.unlink()
    (first.parent / f".{first.name}.partial-{_dead_pid()}").write_bytes(b"half")  # left by a killed pull
    again = pull(orthanc.dicomweb, data, patient="PACS/5 b", keep_patient_id=True, progress=None)
    assert (again.copied, again.present) == (1, 5) and first.exists()
    assert not list(data.rglob(".*"))
    assert lines[-1].startswith("pull: 6 instances copied and 0 already there, 2 series of 1 patients")


def test_a_store_whose_source_changed_says_so_instead_of_asking_for_a_rerun(
    orthanc, credentials, identity_model, tmp_path
):
    """The derived series' UIDs follow from the source's: once a source instance is deleted on
    the server, a rerun makes one instance fewer than the server holds, which no rerun mends."""
    doses = _upload_patient(orthanc, tmp_path, "PACS9", seed=9)
    url = _series_url(orthanc, doses["LDCT"])
    first = denoise_location(str(identity_model), url, orthanc.dicomweb, progress=None)
    source = pydicom.dcmread(next(doses["LDCT"].glob("*.dcm")), stop_before_pixels=True)
    orthanc.rest("DELETE", f"/instances/{orthanc.series_of(source.SeriesInstanceUID)['Instances'][0]}")
    with pytest.raises(DicomwebError) as refused:
        denoise_location(str(identity_model), url, orthanc.dicomweb, progress=None)
    assert str(refused.value) == (
        f"127.0.0.1:{orthanc.port}: derived series {first.series_uid} holds 1 instances this run does not make: "
        "its source series changed after it was stored; delete the derived series on the server, then run the "
        "same command again"
    )
    assert len(orthanc.series_of(first.series_uid)["Instances"]) == 3  # nothing stored, nothing removed


@contextlib.contextmanager
def _answering(do_get: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Iterator[str]:
    """A DICOMweb address on the loopback whose server answers every GET with `do_get`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            do_get(self)

        def log_message(self, *_args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"dicomweb+http://127.0.0.1:{server.server_port}/dicom-web"
        finally:
            server.shutdown()


def test_a_server_that_stays_unavailable_is_one_line_naming_host_status_and_attempts():
    """dicomweb-client retries a 503 and then raises its retry library's RetryError, which
    printed as `RetryError[Attempts: 3, Value: <Response [503]>]`."""
    with _answering(lambda handler: handler.send_error(503)) as url, pytest.raises(DicomwebError) as failed:
        Pacs(parse(url)).series(["SeriesDescription"])
    host = parse(url).host
    assert str(failed.value) == f"{host}: search for series failed with HTTP 503 Service Unavailable (3 attempts)"


def _json_answer(handler: http.server.BaseHTTPRequestHandler, items: list[dict]) -> None:
    body = json.dumps(items).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/dicom+json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_server_that_ignores_the_search_offset_does_not_page_for_ever():
    series = {"0020000D": {"vr": "UI", "Value": ["1.2.3"]}, "0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}
    requests: list[str] = []

    def same_page_always(handler: http.server.BaseHTTPRequestHandler) -> None:
        requests.append(handler.path)
        _json_answer(handler, [series])

    with _answering(same_page_always) as url:
        found = Pacs(parse(url)).series(["Modality"])
    assert [(entry.study, entry.series) for entry in found] == [("1.2.3", "1.2.3.4")]
    assert len(requests) == 2  # the first page, and the second that repeats it


def _search_failure(
    do_get: Callable[[http.server.BaseHTTPRequestHandler], None], test_over: threading.Event
) -> tuple[str, str]:
    """The host, and the one line a series search of a server answering with `do_get` fails
    with; `test_over` is set once the client has given up, which ends the server's answer."""
    with _answering(do_get) as url, pytest.raises(DicomwebError) as failed:
        try:
            Pacs(parse(url)).series(["Modality"])
        finally:
            test_over.set()
    return parse(url).host, str(failed.value)


def test_a_silent_server_is_given_up_once_by_the_read_timeout(monkeypatch):
    """A silent server cost three 300 s read timeouts with no output (dicomweb-client retries
    every exception): a timeout now ends the call, which is not tried again."""
    monkeypatch.setattr(client, "TIMEOUT_S", (5.0, 2.0))
    monkeypatch.setattr(client, "CALL_DEADLINE_S", 60.0)
    requests_seen: list[str] = []
    test_over = threading.Event()  # the server answers nothing until the client has given up

    def silent(handler: http.server.BaseHTTPRequestHandler) -> None:
        requests_seen.append(handler.path)
        test_over.wait(HANG_S)

    host, failure = _search_failure(silent, test_over)
    assert failure == f"{host}: no whole answer to 'search for series' in time (each read may wait 2 s, a call 60 s)"
    assert len(requests_seen) == 1


def test_a_server_that_trickles_its_answer_is_given_up_at_the_call_deadline(monkeypatch):
    """A byte every 0.2 s restarts a 2 s read timeout for ever: only the call's deadline ends it."""
    monkeypatch.setattr(client, "TIMEOUT_S", (5.0, 2.0))
    monkeypatch.setattr(client, "CALL_DEADLINE_S", 3.0)
    test_over = threading.Event()

    def trickle(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/dicom+json")
        handler.send_header("Content-Length", "1000000")
        handler.end_headers()
        while not test_over.wait(0.2):  # how often a byte comes, not how long the test waits
            try:
                handler.wfile.write(b" ")
                handler.wfile.flush()
            except OSError:
                return

    host, failure = _search_failure(trickle, test_over)
    assert failure == f"{host}: no whole answer to 'search for series' in time (each read may wait 2 s, a call 3 s)"


def test_a_search_answer_without_uids_is_one_line_naming_what_is_missing():
    def series_without_uids(handler: http.server.BaseHTTPRequestHandler) -> None:
        _json_answer(handler, [{"00080060": {"vr": "CS", "Value": ["CT"]}}])

    with _answering(series_without_uids) as url, pytest.raises(DicomwebError) as failed:
        Pacs(parse(url)).series(["Modality"])
    assert str(failed.value) == (
        f"{parse(url).host}: the answer to 'search for series' lacks StudyInstanceUID, which QIDO-RS requires"
    )


def test_pull_names_patient_folders_by_a_keyed_pseudonym_kept_beside_the_data_root(orthanc, credentials, tmp_path):
    _upload_patient(orthanc, tmp_path / "source", "MRN 0042/7", seed=10)
    data = tmp_path / "data"
    report = pull(orthanc.dicomweb, data, patient="MRN 0042/7", progress=None)
    [folder] = report.patients
    assert re.fullmatch(r"P[0-9a-f]{12}", folder) and sorted(p.name for p in data.iterdir()) == [folder]
    mapping = data.with_name("data.patients.json")
    assert json.loads(mapping.read_text())["folders"] == {folder: "MRN 0042/7"}
    assert mapping.stat().st_mode & 0o777 == 0o600
    assert not any("0042" in str(path) for path in data.rglob("*"))
    again = pull(orthanc.dicomweb, data, patient="MRN 0042/7", progress=None)  # the key is kept: the same folder
    assert again.patients == {folder} and (again.copied, again.present) == (0, 6)
    other = tmp_path / "other"
    assert pull(orthanc.dicomweb, other, patient="MRN 0042/7", progress=None).patients != {folder}  # its own key


def test_pull_never_puts_a_second_patient_into_a_folder_in_a_later_run(orthanc, credentials, tmp_path):
    """`a/b` and `a_b` make the same folder name: once `a/b` is there, `a_b`'s series are
    skipped, however much later it is pulled (they used to merge into one patient)."""
    _upload_patient(orthanc, tmp_path / "one", "a/b", seed=11)
    _upload_patient(orthanc, tmp_path / "two", "a_b", seed=12)
    data = tmp_path / "data"
    assert pull(orthanc.dicomweb, data, patient="a/b", keep_patient_id=True, progress=None).copied == 6
    second = pull(orthanc.dicomweb, data, patient="a_b", keep_patient_id=True, progress=None)
    assert second.copied == 0 and len(second.skipped) == 2
    assert all(line.endswith(": folder a_b holds another PatientID's series") for line in second.skipped)
    assert len(list((data / "a_b").rglob("*.dcm"))) == 6


def _dead_pid() -> int:
    """The pid of a process that has ended (the kernel does not reuse it at once)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_pull_leaves_the_half_written_files_of_a_pull_still_running(orthanc, credentials, tmp_path):
    """Two pulls into one folder: each removes only what a killed pull left, never the other's
    file in the middle of being written (which made that pull crash at its rename)."""
    _upload_patient(orthanc, tmp_path / "source", "PACS7", seed=7)
    data = tmp_path / "data"
    pull(orthanc.dicomweb, data, patient="PACS7", keep_patient_id=True, progress=None)
    folder = data / "PACS7" / "LDCT"
    sorted(folder.glob("*.dcm"))[0].unlink()
    with subprocess.Popen(["sleep", "600"]) as other:  # stands in for the other pull's process
        try:
            theirs = folder / f".abc.dcm.partial-{other.pid}"
            killed = folder / f".def.dcm.partial-{_dead_pid()}"
            theirs.write_bytes(b"being written")
            killed.write_bytes(b"half")
            report = pull(orthanc.dicomweb, data, patient="PACS7", keep_patient_id=True, progress=None)
            assert report.copied == 1 and theirs.read_bytes() == b"being written" and not killed.exists()
        finally:
            other.kill()


def test_pull_skips_derived_series_such_as_its_own_output(orthanc, credentials, identity_model, tmp_path):
    doses = _upload_patient(orthanc, tmp_path / "source", "PACS8", seed=8)
    derived = denoise_location(
        str(identity_model), _series_url(orthanc, doses["LDCT"]), orthanc.dicomweb, progress=None
    )
    data, lines = tmp_path / "data", list[str]()
    report = pull(orthanc.dicomweb, data, patient="PACS8", keep_patient_id=True, progress=lines.append)
    assert (report.series, report.copied) == (2, 6)
    assert report.skipped == [f"series {derived.series_uid}: derived (ImageType DERIVED), not a scan"]
    assert len(list((data / "PACS8" / "LDCT").glob("*.dcm"))) == 3
    assert not list(data.rglob(".*"))


@pytest.mark.slow
def test_round_trip_pacs_to_pipeline_to_pacs(simulated_data, tmp_path):
    """Simulated series uploaded to a fresh Orthanc, `pull`ed, `run --until push` of `red_cnn` with `tiny`
    (gate refusals end with --require-blessed's status), and `denoise` from Orthanc into it."""
    server = orthanc_server.start_orthanc()
    orthanc = next(server)
    try:
        _round_trip(orthanc, simulated_data, tmp_path)
    finally:
        server.close()


def _round_trip(orthanc, simulated_data: Path, tmp_path: Path) -> None:
    env = {USER_VARIABLE: orthanc_server.USER, PASSWORD_VARIABLE: orthanc_server.PASSWORD}
    orthanc.upload(sorted(simulated_data.rglob("*.dcm")))
    data, root = tmp_path / "data", tmp_path / "run"
    outputs = [ctdenoise("pull", "--from", orthanc.dicomweb, "--out", str(data), "--keep-patient-id", env=env)]
    assert outputs[-1].returncode == 0, outputs[-1].stderr[-2000:]
    for folder in simulated_data.glob("*/*"):
        uids = {pydicom.dcmread(p).SOPInstanceUID for p in (data / folder.relative_to(simulated_data)).glob("*.dcm")}
        assert uids == {pydicom.dcmread(p).SOPInstanceUID for p in folder.glob("*.dcm")}
    run = (
        "run",
        "--data",
        str(data),
        "--root",
        str(root),
        "--until",
        "push",
        "--preset",
        "tiny",
        "--set",
        "model=red_cnn",
        "--require-blessed",
    )
    outputs.append(ctdenoise(*run, *PERMISSIVE_GATE, "--summary", str(tmp_path / "s.json"), env=env))
    assert outputs[-1].returncode == 0, outputs[-1].stderr[-3000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["push"]["pushed"]
    model_card = json.loads((Path(summary["push"]["path"]) / "ctdenoise_model.json").read_text())
    assert model_card["hparams"]["model"] == "red_cnn"
    outputs.append(ctdenoise(*run, env=env))  # the default gate: ten tiny steps do not beat LDCT
    assert outputs[-1].returncode == 3 and "the gate refused the model" in outputs[-1].stderr, outputs[-1].stderr[
        -2000:
    ]
    source = simulated_data / "SIM001" / "LDCT"
    outputs.append(
        ctdenoise(
            "denoise",
            "--model",
            "latest",
            "--root",
            str(root),
            "--input",
            _series_url(orthanc, source),
            "--out",
            orthanc.dicomweb,
            env=env,
        )
    )
    assert outputs[-1].returncode == 0, outputs[-1].stderr[-2000:]
    series_uid = outputs[-1].stdout.split("denoise: derived series ")[1].split()[0]
    stored = _stored(orthanc, series_uid)
    sources = sorted((pydicom.dcmread(p) for p in source.glob("*.dcm")), key=lambda ds: int(ds.InstanceNumber))
    assert len(stored) == len(sources) == 3
    for ds, src in zip(stored, sources, strict=True):
        assert ds.SOPInstanceUID != src.SOPInstanceUID
        assert_denoised_by("red_cnn", summary, outputs[-1].stdout, ds.DerivationDescription)
        for keyword in GEOMETRY:
            assert ds.get(keyword) == src.get(keyword), keyword
    derived = tmp_path / "derived.dcm"
    stored[0].save_as(derived)
    assert_no_new_iod_errors(sorted(source.glob("*.dcm"))[0], derived)
    for result in outputs:
        assert orthanc_server.PASSWORD not in result.stdout + result.stderr
    metadata = sqlite3.connect(root / "metadata.sqlite").iterdump()
    assert not any(orthanc_server.PASSWORD in line for line in metadata)
