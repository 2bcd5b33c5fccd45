"""One ML Metadata store shared by a team: a real MariaDB server on the loopback
(tests/mysql_server.py), two run roots running at the same time into it, lineage both ways,
`denoise --model latest`, and a password that is refused in one line and written nowhere."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from ctdenoise.metadata.store import PASSWORD_VARIABLE, StoreAddress
from tests.conftest import PERMISSIVE_GATE
from tests.limits import HANG_S
from tests.mysql_server import PASSWORD, USER, MySQLServer, start_mysql_server
from tests.pipeline_helpers import ctdenoise, ctdenoise_cmd

pytestmark = pytest.mark.slow
DATABASE = "team_metadb"


@pytest.fixture(scope="module")
def mysql_server() -> Iterator[MySQLServer]:
    yield from start_mysql_server()


def _store_args(server: MySQLServer, database: str = DATABASE) -> list[str]:
    return ["--mlmd-mysql", server.address(database), "--mlmd-user", USER]


def _env(password: str = PASSWORD) -> dict[str, str]:
    return {**os.environ, PASSWORD_VARIABLE: password}


@pytest.fixture(scope="module")
def two_roots(mysql_server, simulated_data, tmp_path_factory):
    """`run --until push --preset tiny` from two run roots at the same time, both into
    DATABASE, each pushing to a serving folder outside its root (so that only ML Metadata
    can tell `denoise --model latest` where): {root: (summary, stdout + stderr)}."""
    roots = [tmp_path_factory.mktemp("team_a"), tmp_path_factory.mktemp("team_b")]
    runs = {
        root: subprocess.Popen(
            ctdenoise_cmd(
                "run",
                "--data",
                str(simulated_data),
                "--root",
                str(root),
                "--until",
                "push",
                "--preset",
                "tiny",
                *PERMISSIVE_GATE,
                "--summary",
                str(root / "s.json"),
                "--serving-dir",
                str(_serving(root)),
                *_store_args(mysql_server),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_env(),
        )
        for root in roots
    }
    results = {}
    for root, process in runs.items():
        output, _ = process.communicate(timeout=HANG_S)
        assert process.returncode == 0, output[-3000:]
        results[root] = (json.loads((root / "s.json").read_text()), output)
    return results


def _serving(root: Path) -> Path:
    return root.with_name(f"{root.name}_serving")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def test_two_roots_run_at_once_into_one_mysql_store_and_each_summary_is_its_own(two_roots, tmp_path_factory):
    (root_a, (summary_a, _)), (root_b, (summary_b, _)) = two_roots.items()
    for root, summary, other in ((root_a, summary_a, root_b), (root_b, summary_b, root_a)):
        assert set(summary) == {"ingest", "validation", "train", "evaluation", "push"}
        paths = [s for s in _strings(summary) if s.startswith("/")]
        assert paths and all(not p.startswith(str(other)) for p in paths)
        assert summary["train"]["model_uri"].startswith(str(root / "pipeline"))
        assert Path(summary["push"]["path"]).parent == _serving(root)
        assert not (root / "metadata.sqlite").exists()  # the shared store, not a file of the root


def test_each_root_is_a_pipeline_of_its_own_in_the_shared_store(two_roots, mysql_server):
    from ml_metadata import metadata_store

    address = StoreAddress(mysql_server.address(DATABASE), USER, PASSWORD)
    roots = list(two_roots)
    store = metadata_store.MetadataStore(address.connection_config(roots[0]))
    names = {c.name for c in store.get_contexts_by_type("pipeline")}
    assert names == {address.pipeline_name(root) for root in roots} and len(names) == 2
    assert len(store.get_contexts_by_type("pipeline_run")) == 2


def test_lineage_both_ways_and_denoise_latest_read_the_shared_store(two_roots, mysql_server, simulated_data, tmp_path):
    for root, (summary, _) in two_roots.items():
        back = ctdenoise("lineage", "--root", str(root), "--json", *_store_args(mysql_server), env=_env())
        assert back.returncode == 0, back.stderr[-2000:]
        tree = json.loads(back.stdout)
        assert tree["type"] == "PushedModel" and tree["properties"]["pushed_destination"] == summary["push"]["path"]

        out = tmp_path / f"denoised-{root.name}"
        series = ctdenoise(
            "denoise",
            "--model",
            "latest",
            "--root",
            str(root),
            "--input",
            str(simulated_data / "SIM001" / "LDCT"),
            "--out",
            str(out),
            *_store_args(mysql_server),
            env=_env(),
        )
        assert series.returncode == 0, series.stderr[-2000:]
        assert f"denoise: model {summary['push']['path']} (cycle_identity, receptive radius 22 px)\n" in series.stdout
        ds = pydicom.dcmread(sorted(out.glob("*.dcm"))[0])
        assert summary["push"]["version"] in ds.DerivationDescription

    forward = ctdenoise("lineage", "--dataset", str(simulated_data), "--json", *_store_args(mysql_server), env=_env())
    assert forward.returncode == 0, forward.stderr[-2000:]
    pushed = {path for model in json.loads(forward.stdout) for path in model["pushed_to"]}
    assert pushed == {summary["push"]["path"] for summary, _ in two_roots.values()}


def test_the_password_is_written_nowhere(two_roots, mysql_server):
    assert PASSWORD not in mysql_server.dump(DATABASE)
    for root, (summary, output) in two_roots.items():
        assert PASSWORD not in output and PASSWORD not in json.dumps(summary)
        for path in [*root.rglob("*"), *_serving(root).rglob("*")]:
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes(), path


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--data", "DATA", "--until", "ingest"],
        ["lineage"],
        ["denoise", "--model", "latest", "--input", "DATA", "--out", "OUT"],
    ],
    ids=["run", "lineage", "denoise"],
)
def test_a_wrong_password_is_one_line_that_does_not_print_it(mysql_server, simulated_data, tmp_path, command):
    from ml_metadata import metadata_store

    metadata_store.MetadataStore(
        StoreAddress(mysql_server.address(DATABASE), USER, PASSWORD).connection_config(tmp_path)
    )
    wrong = "not-the-" + PASSWORD
    args = [str(simulated_data) if a == "DATA" else str(tmp_path / "out") if a == "OUT" else a for a in command]
    result = ctdenoise(*args, "--root", str(tmp_path / "root"), *_store_args(mysql_server), env=_env(wrong))
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"ctdenoise: error: ML Metadata at MySQL {USER}@127.0.0.1:{mysql_server.port}/{DATABASE}: "
        "the server refused the connection"
    ), line
    assert wrong not in result.stdout + result.stderr and PASSWORD not in result.stdout + result.stderr
    assert not (tmp_path / "out").exists()
    right = ctdenoise("lineage", "--root", str(tmp_path / "root"), *_store_args(mysql_server), env=_env())
    assert "refused" not in right.stderr, right.stderr  # the same command with the password gets in


def test_read_commands_never_create_a_database_on_the_server(mysql_server, tmp_path):
    result = ctdenoise("lineage", "--root", str(tmp_path), *_store_args(mysql_server, "mistyped_db"), env=_env())
    [line] = result.stderr.strip().splitlines()
    assert result.returncode == 1 and line.endswith(
        "/mistyped_db: no such database on the server (reading never creates one): check the name in --mlmd-mysql"
    ), line
    assert "mistyped_db" not in mysql_server.databases()


def test_an_address_holding_a_password_is_refused_without_printing_it(tmp_path):
    result = ctdenoise("lineage", "--root", str(tmp_path), "--mlmd-mysql", f"{USER}:{PASSWORD}@127.0.0.1:3306/x")
    assert result.returncode == 1 and "without a user or password" in result.stderr
    assert PASSWORD not in result.stdout + result.stderr


def test_recovering_one_roots_killed_run_leaves_another_roots_running_execution(two_roots, mysql_server):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from ctdenoise.metadata import recovery

    address = StoreAddress(mysql_server.address(DATABASE), USER, PASSWORD)
    root_a, root_b = two_roots
    store = metadata_store.MetadataStore(address.connection_config(root_a))
    pipeline_a = store.get_context_by_type_and_name("pipeline", address.pipeline_name(root_a))
    running = metadata_store_pb2.Execution(
        type_id=store.get_execution_types()[0].id, last_known_state=metadata_store_pb2.Execution.RUNNING
    )
    [execution_id] = store.put_executions([running])
    store.put_attributions_and_associations(
        [], [metadata_store_pb2.Association(execution_id=execution_id, context_id=pipeline_a.id)]
    )

    said: list[str] = []
    assert recovery.recover(root_b, said.append, address=address) == [] and said == []
    [still] = store.get_executions_by_id([execution_id])
    assert still.last_known_state == metadata_store_pb2.Execution.RUNNING
    assert recovery.recover(root_a, said.append, address=address) == [execution_id]
    [marked] = store.get_executions_by_id([execution_id])
    assert marked.last_known_state == metadata_store_pb2.Execution.CANCELED and len(said) == 1
