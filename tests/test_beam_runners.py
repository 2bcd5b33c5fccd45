"""Ingestion and statistics on Beam runners picked only by `ctdenoise run --beam-arg` (docs/kubeflow.md,
"Beam at scale"): the multi-process DirectRunner, and the PortableRunner submitting to a local job
server with LOOPBACK workers, write the same examples, the same ingest report and the same
validation verdict as the default in-process DirectRunner.

Dataflow, Flink and Spark need a cloud project or a JVM cluster and are not run here; the
portable runner speaks the same Job API that the Flink and Spark job servers serve.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import tensorflow as tf

from ctdenoise.contract import features
from tests.limits import HANG_S
from tests.pipeline_helpers import ctdenoise, read_examples


@dataclass
class Run:
    summary: dict
    examples: dict[str, dict[bytes, tf.train.Example]]
    """split → slice key → example."""


def run_until_validate(data: Path, root: Path, *beam_args: str) -> Run:
    root.mkdir(parents=True, exist_ok=True)
    result = ctdenoise(
        "run",
        "--data",
        str(data),
        "--root",
        str(root),
        "--until",
        "validate",
        "--preset",
        "tiny",
        "--summary",
        str(root / "s.json"),
        *(f"--beam-arg={arg}" for arg in beam_args),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((root / "s.json").read_text())
    uri = Path(summary["ingest"].pop("artifact_uri"))
    examples = {
        split: {
            example.features.feature[features.SLICE_KEY].bytes_list.value[0]: example
            for example in read_examples(uri, split)
        }
        for split in features.SPLITS
    }
    return Run(summary, examples)


@pytest.fixture(scope="module")
def in_process(simulated_data, tmp_path_factory) -> Run:
    """The default runner (configs.BEAM_PIPELINE_ARGS: DirectRunner, in memory, one worker)."""
    return run_until_validate(simulated_data, tmp_path_factory.mktemp("in_process"))


def assert_same_outcome(run: Run, reference: Run) -> None:
    assert run.summary["validation"] == {"passed": True, "anomalies": []}
    assert run.summary == reference.summary
    assert run.summary["ingest"]["rejected"] == [] and sum(run.summary["ingest"]["examples"].values()) > 0
    for split in features.SPLITS:
        assert sorted(run.examples[split]) == sorted(reference.examples[split])
        assert run.examples[split] == reference.examples[split]  # every feature of every example


@pytest.mark.slow
def test_multi_process_direct_runner_writes_the_same_examples(simulated_data, in_process, tmp_path):
    run = run_until_validate(
        simulated_data, tmp_path, "--direct_running_mode=multi_processing", "--direct_num_workers=2"
    )
    assert_same_outcome(run, in_process)


@pytest.mark.slow
def test_portable_runner_on_a_local_job_server_writes_the_same_examples(simulated_data, in_process, tmp_path):
    """Beam's own Python job server on a free loopback port; LOOPBACK runs the SDK workers in
    the submitting process, so no container or TFX sdist is needed (pipeline/local_runner.py)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "job_server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "apache_beam.runners.portability.local_job_service_main",
                "--port",
                str(port),
                "--staging_dir",
                str(tmp_path / "staging"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + HANG_S  # bounds a hang: the wait is for the line
        while f"Listening for beam jobs on port {port}" not in log_path.read_text(errors="replace"):
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)  # how often to look, not how long to wait
        run = run_until_validate(
            simulated_data,
            tmp_path / "root",
            "--runner=PortableRunner",
            f"--job_endpoint=localhost:{port}",
            "--environment_type=LOOPBACK",
        )
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)  # a grace period to stop in; past it, killed (the run is over)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert_same_outcome(run, in_process)
    jobs = log_path.read_text(errors="replace").count("with state DONE")
    assert jobs == 2, f"{jobs} jobs ran on the job server (ingestion and statistics expected)"
