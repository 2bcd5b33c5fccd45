"""`ctdenoise serve` against a real PACS (Debian's Orthanc on the loopback): series stored while
it watches are denoised into their study once each, derived series are never picked up again,
its journal and /metrics agree with what the server holds, and it survives being killed,
restarted and stopped, and the PACS restarting or refusing a store half-way."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import sys
from pathlib import Path

import pydicom
import pytest
import tf_keras as keras
import yaml

from ctdenoise.app.base_models import BASE_DIR, PAIRED_BASE
from ctdenoise.app.cli import build_parser
from ctdenoise.app.commands import cmd_serve
from ctdenoise.app.serve.journal import MAX_ATTEMPTS, Journal
from ctdenoise.app.serve.service import GRACE_S
from ctdenoise.contract.names import MODEL_METADATA_FILE
from ctdenoise.dicomweb_io.address import PASSWORD_VARIABLE, USER_VARIABLE
from tests import dicom_factory, orthanc_server
from tests.pipeline_helpers import ctdenoise
from tests.saved_models import export_layer, held_identity, save_module
from tests.serve_process import ServeProcess

MANIFEST = Path(__file__).parents[1] / "kubeflow" / "serve.yaml"
FAST = ["--poll", "0.2", "--settle", "2", "--http", "127.0.0.1:0"]
"""Short waits, so a test is quick. The settle time is what keeps a series from being taken
half-uploaded: far longer than the test's upload of one series' few instances takes."""


@pytest.fixture
def orthanc():
    yield from orthanc_server.start_orthanc()


@pytest.fixture
def env() -> dict[str, str]:
    return {USER_VARIABLE: orthanc_server.USER, PASSWORD_VARIABLE: orthanc_server.PASSWORD}


def _serving(root: Path, version: int, layer: keras.layers.Layer) -> Path:
    """A model pushed as version `version` under RUN_ROOT/serving, as `--model latest` finds it."""
    folder = export_layer(root / "serving" / str(version), layer)
    (folder / MODEL_METADATA_FILE).write_text(json.dumps({"version": version}))
    return folder


def _upload_series(orthanc, folder: Path, patient: str, dose: str, slices: int) -> str:
    """A real CT series of `slices` 32² slices uploaded; its SeriesInstanceUID."""
    paths = [dicom_factory.write_slice(folder, patient, dose, i, z=3.0 * i) for i in range(1, slices + 1)]
    orthanc.upload(paths)
    return str(pydicom.dcmread(paths[0], stop_before_pixels=True).SeriesInstanceUID)


def _metric(text: str, state: str) -> int:
    found = re.search(rf'^ctdenoise_serve_series\{{state="{state}"\}} (\S+)$', text, re.M)
    assert found, text
    return int(float(found[1]))


def test_serve_denoises_each_arrival_once_and_takes_a_new_push_between_series(orthanc, env, tmp_path):
    root, data = tmp_path / "root", tmp_path / "data"
    first = _serving(root, 1, keras.layers.Identity())
    ldct = [_upload_series(orthanc, data, f"P{n}", "LDCT", 3) for n in range(2)]
    ndct = _upload_series(orthanc, data, "P0", "NDCT", 3)
    serve = ServeProcess(["--pacs", orthanc.dicomweb, "--root", str(root), *FAST], env, tmp_path / "stderr")
    for n in range(2):
        serve.wait_for(lambda e: e["event"] == "stored", count=n + 1)
    second = _serving(root, 2, keras.layers.Lambda(lambda x: x * 1.0, name="scaled"))
    ldct.append(_upload_series(orthanc, data, "P2", "LDCT", 2))
    late = serve.wait_for(lambda e: e["event"] == "stored", count=3)
    serve.wait_for(lambda e: e["event"] == "polled" and e["stored"] == 3, count=2)  # derived series seen, not taken

    assert serve.get("/healthz").status_code == 200
    metrics = serve.get("/metrics").text
    assert _metric(metrics, "stored") == 3 and _metric(metrics, "in_progress") == 0
    derived = orthanc.derived_of()
    assert sorted(derived) == sorted(ldct) and ndct not in derived
    assert all(len(made) == 1 for made in derived.values())
    for source, (made,) in derived.items():
        assert orthanc.instance_count(made) == orthanc.instance_count(source)
    with sqlite3.connect(root / "serve" / "journal.sqlite") as db:
        rows = dict(db.execute("SELECT series, model FROM series WHERE state = 'stored'").fetchall())
    assert rows[late["series"]] == str(second) and {rows[s] for s in ldct[:2]} == {str(first)}
    assert late["series"] == ldct[2]

    code, seconds = serve.terminate()
    assert code == 0 and seconds < 30 and serve.events[-1]["event"] == "stopped"
    logged = json.dumps(serve.events) + (tmp_path / "stderr").read_text()
    assert orthanc_server.PASSWORD not in logged and orthanc_server.USER not in logged
    again = ServeProcess(["--pacs", orthanc.dicomweb, "--root", str(root), *FAST], env, tmp_path / "stderr")
    again.wait_for(lambda e: e["event"] == "polled", count=2)
    assert again.count("claimed") == 0 and orthanc.derived_of() == derived
    again.terminate()


def test_serve_with_the_base_model_needs_no_pushed_model(orthanc, env, tmp_path):
    """`--model base`: the shipped base model (docs/design.md, "Base models"), with no push in the root."""
    series = _upload_series(orthanc, tmp_path / "data", "P0", "LDCT", 2)
    serve = ServeProcess(
        ["--pacs", orthanc.dicomweb, "--model", "base", "--root", str(tmp_path / "root"), *FAST], env, tmp_path / "err"
    )
    stored = serve.wait_for(lambda e: e["event"] == "stored")
    assert stored["series"] == series and list(orthanc.derived_of()) == [series]
    with sqlite3.connect(tmp_path / "root" / "serve" / "journal.sqlite") as db:
        [(model,)] = db.execute("SELECT model FROM series WHERE state = 'stored'").fetchall()
    assert model == str(BASE_DIR / PAIRED_BASE)
    assert serve.terminate()[0] == 0


def test_bad_settings_are_one_line_and_a_second_service_on_a_journal_is_refused(orthanc, env, tmp_path):
    root = tmp_path / "root"
    _serving(root, 1, keras.layers.Identity())
    base = ["serve", "--pacs", orthanc.dicomweb, "--root", str(root)]
    refused = {
        ("--match", "SeriesDescription"): "--match SeriesDescription: give ATTRIBUTE=REGEX with a DICOM keyword",
        ("--match", "Description=x"): "--match Description=x: give ATTRIBUTE=REGEX with a DICOM keyword",
        ("--match", "SeriesDescription=(x"): "--match SeriesDescription=(x: not a regular expression",
        ("--since", "yesterday"): "--since yesterday: give a date as YYYY-MM-DD",
        ("--http", "9464"): "--http 9464: give HOST:PORT",
        ("--workers", "0"): "--workers 0: give at least 1",
        ("--pacs", f"{orthanc.dicomweb}/studies/1.2"): "give the DICOMweb service, not a study or series in it",
    }
    for extra, message in refused.items():
        result = ctdenoise(*base, *extra, env=env)
        (line,) = result.stderr.strip().splitlines()
        assert result.returncode == 1 and line.startswith("ctdenoise: error: ") and message in line, line
    first = ServeProcess(["--pacs", orthanc.dicomweb, "--root", str(root), *FAST], env, tmp_path / "stderr")
    port = first.http.rpartition(":")[2]
    second = ctdenoise(
        *base, "--journal", str(tmp_path / "other" / "journal.sqlite"), "--http", f"127.0.0.1:{port}", env=env
    )
    assert (
        second.returncode == 1
        and f"--http 127.0.0.1:{port}: cannot answer there (Address already in use)" in second.stderr
    )
    third = ctdenoise(*base, "--http", "127.0.0.1:0", env=env)
    assert third.returncode == 1 and "is in use by ctdenoise serve (pid" in third.stderr
    first.terminate()


def test_journal_settles_retries_and_parks(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    journal.observe("1.2", "1.2.3", 2)
    assert journal.claim(settle_s=3600, model="m") is None  # not settled yet
    journal.observe("1.2", "1.2.3", 3)  # still arriving
    entry = journal.claim(settle_s=0, model="m1")
    assert entry is not None and entry.instances == 3 and entry.model == "m1"
    journal.requeue(entry.series, "the PACS was away", after_s=0)
    again = journal.claim(settle_s=0, model="m2")
    assert again is not None and again.model == "m1"  # interrupted: finished with its own model
    states = [journal.failed("1.2.3", "refused", backoff_s=0) for _ in range(MAX_ATTEMPTS)]
    assert states == ["failed"] * (MAX_ATTEMPTS - 1) + ["parked"]
    journal.observe("1.2", "1.2.4", 1)
    other = journal.claim(settle_s=0, model="m2")
    assert other is not None and other.series == "1.2.4"  # a parked series blocks nothing
    journal.observe("1.2", "9.9", 1)  # its derived series, seen half-stored
    journal.stored("1.2.4", derived="9.9", seconds=1.0)
    journal.observe("1.2", "9.9", 2)  # and seen again, whole: still skipped
    journal.stored("1.2.3", derived="9.8", seconds=1.0)  # stored while a poll that listed 9.8 runs:
    journal.observe("1.2", "9.8", 2)  # the poll journals nothing for it
    assert journal.counts() == {"seen": 0, "in_progress": 0, "stored": 2, "skipped": 1, "failed": 0, "parked": 0}


@pytest.mark.slow
def test_serve_stores_every_series_once_through_kills_restarts_and_a_refused_store(orthanc, env, tmp_path):
    """40 series arrive while two workers run; meanwhile a store is refused half-way, the
    service is killed with -9 twice, and the PACS restarts twice."""
    root, data = tmp_path / "root", tmp_path / "data"
    model = export_layer(tmp_path / "identity", keras.layers.Identity())
    args = ["--pacs", orthanc.dicomweb, "--model", str(model), "--root", str(root), "--workers", "2", *FAST]
    sources: list[str] = []
    others: list[str] = []

    def upload(count: int) -> None:
        for _ in range(count):
            n = len(sources)
            sources.append(_upload_series(orthanc, data, f"L{n:02d}", "LDCT", 3))
            if n % 4 == 0:
                others.append(_upload_series(orthanc, data, f"L{n:02d}", "NDCT", 3))

    def kill_while_in_hand(serve: ServeProcess) -> ServeProcess:
        serve.wait_for(lambda e: e["event"] == "claimed", count=serve.count("claimed") + 1)
        serve.kill()
        return ServeProcess(args, env, tmp_path / "stderr")

    serve = ServeProcess(args, env, tmp_path / "stderr")
    upload(8)
    serve.wait_for(lambda e: e["event"] == "stored", count=2)
    orthanc.refuse_from(2)  # the PACS takes each series' first instance, refuses the rest
    refused = serve.wait_for(lambda e: e["event"] == "failed")
    orthanc.refuse_from(None)
    assert "1 of the 3 instances" in refused["reason"]  # Orthanc answers success and drops the rest
    upload(8)
    serve = kill_while_in_hand(serve)
    upload(8)
    orthanc.restart()
    upload(8)
    orthanc.restart()
    serve = kill_while_in_hand(serve)
    upload(8)
    done = serve.wait_for(  # derived series seen half-stored are skipped once a worker has read them
        lambda e: e["event"] == "polled" and e["stored"] == len(sources) and e["seen"] == e["in_progress"] == 0
    )

    derived = orthanc.derived_of()
    assert sorted(derived) == sorted(sources), "a source series without, or a non-matching one with, a derived series"
    assert all(len(made) == 1 for made in derived.values()), "a series stored twice"
    for source, (made,) in derived.items():
        assert orthanc.instance_count(made) == orthanc.instance_count(source) == 3, "a derived series half-stored"
    assert all(orthanc.instance_count(other) == 3 for other in others)
    with sqlite3.connect(root / "serve" / "journal.sqlite") as db:
        journal = dict(db.execute("SELECT series, derived FROM series WHERE state = 'stored'").fetchall())
    assert journal == {source: made for source, (made,) in derived.items()}
    assert done["failed"] == done["parked"] == 0
    metrics = serve.get("/metrics").text
    assert _metric(metrics, "stored") == len(sources) and _metric(metrics, "parked") == 0
    code, seconds = serve.terminate()
    assert code == 0 and seconds < 30


def test_sigterm_abandons_a_series_in_hand_and_exits_within_30_s(orthanc, env, tmp_path):
    """A model call that does not end (a model that waits for a file never made) cannot be
    interrupted: after GRACE_S the series goes back to the journal, the process exits 0, and
    nothing of it is on the server."""
    root, data = tmp_path / "root", tmp_path / "data"
    model = save_module(tmp_path / "held", held_identity(str(data / "*"), str(tmp_path / "never")))
    source = _upload_series(orthanc, data, "P0", "LDCT", 2)
    serve = ServeProcess(
        ["--pacs", orthanc.dicomweb, "--model", str(model), "--root", str(root), *FAST], env, tmp_path / "e"
    )
    serve.wait_for(lambda e: e["event"] == "claimed")
    code, seconds = serve.terminate()
    assert code == 0 and GRACE_S <= seconds < 30
    assert serve.events[-1]["event"] == "stopped" and serve.events[-1]["abandoned"] == 1
    with sqlite3.connect(root / "serve" / "journal.sqlite") as db:
        assert db.execute("SELECT state, reason FROM series WHERE series = ?", (source,)).fetchone()[0] == "seen"
    assert orthanc.derived_of() == {}


def test_the_deployment_manifest_runs_serve_with_probes_on_its_port(orthanc, env, tmp_path):
    """kubeflow/serve.yaml parses, its command is `ctdenoise serve` with arguments the real parser
    takes, its probes ask /healthz on the port `--http` opens; and that command, run as a
    process with this machine's PACS, run root and port, answers /healthz and stops on SIGTERM."""
    documents = list(yaml.safe_load_all(MANIFEST.read_text()))
    (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command, args = container["command"], container["args"]
    parsed = build_parser().parse_args([*command[1:], *args])
    port = int(parsed.http.rpartition(":")[2])
    assert command[0] == "ctdenoise" and parsed.func is cmd_serve and parsed.root == "/state"
    assert all(
        container[p]["httpGet"] == {"path": "/healthz", "port": port} for p in ("livenessProbe", "readinessProbe")
    )
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert pod["terminationGracePeriodSeconds"] > 30
    assert {e["name"] for e in container["env"]} == {USER_VARIABLE, PASSWORD_VARIABLE}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["state"] == parsed.root and mounts["models"] == f"{parsed.root}/serving"
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if v["name"] == "state"} <= claims

    root = tmp_path / "state"
    _serving(root, 1, keras.layers.Identity())
    here = {"--pacs": orthanc.dicomweb, "--root": str(root), "--http": "127.0.0.1:0"}
    local = [here.get(before, arg) for before, arg in zip(["", *args[:-1]], args, strict=True)]
    program = [shutil.which("ctdenoise", path=str(Path(sys.executable).parent)), *command[1:]]
    serve = ServeProcess(local, env, tmp_path / "stderr", program=program)
    assert serve.get("/healthz").status_code == 200
    assert serve.wait_for(lambda e: e["event"] == "polled")["matched"] == 0
    code, seconds = serve.terminate()
    assert code == 0 and seconds < 30
