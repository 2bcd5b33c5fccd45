"""Helpers shared by the pipeline tests: run the CLI as a user would, run the ingestion
Beam graph directly, read examples back."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import tensorflow as tf

from ctdenoise.components.dicom_example_gen.executor import build_ingest_pipeline, read_report
from ctdenoise.components.dicom_example_gen.layout import Layout, assign_splits, scan
from ctdenoise.contract.names import split_dir
from tests.limits import HANG_S


def ctdenoise_cmd(*args: str) -> list[str]:
    """The `ctdenoise` command line, run with this interpreter."""
    return [sys.executable, "-m", "ctdenoise.app.cli", *args]


def ctdenoise(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`ctdenoise ARGS...` to its end, its output captured, with `env` on top of ours; HANG_S
    only bounds a hang."""
    return subprocess.run(
        ctdenoise_cmd(*args), capture_output=True, text=True, timeout=HANG_S, env={**os.environ, **(env or {})}
    )


def run_tiny_to_push(
    data: Path, root: Path, summary: Path, *sets: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`ctdenoise run --until push --preset tiny` with the permissive gate (a few steps cannot beat
    the LDCT), each of `sets` as `--set`, the summary written to `summary`."""
    from tests.conftest import PERMISSIVE_GATE

    settings = [arg for item in sets for arg in ("--set", item)]
    command = ["run", "--data", str(data), "--root", str(root), "--until", "push", "--preset", "tiny", *settings]
    return ctdenoise(*command, *PERMISSIVE_GATE, "--summary", str(summary), env=env)


def ingest(root: Path, out: Path, layout: Layout = Layout(), eval_fraction: float = 0.5) -> dict:
    """Run the ingestion component's Beam graph on the DirectRunner; return its report."""
    found = scan(str(root), layout)
    out.mkdir(parents=True, exist_ok=True)
    with beam.Pipeline() as p:
        build_ingest_pipeline(
            p, str(root), layout, assign_splits(found.patients, eval_fraction), found.found, found.rejected, str(out)
        )
    return read_report(str(out))


def read_examples(out: Path, split: str) -> list[tf.train.Example]:
    files = sorted(glob.glob(os.path.join(split_dir(str(out), split), "*.gz")))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def assert_denoised_by(model: str, summary: dict, denoise_stdout: str, derivation: str) -> None:
    """`denoise` named the pushed `model`, and a derived slice's DerivationDescription
    (`derivation`) says which generator version made it: what every model's end-to-end run
    checks (docs/design.md, "The model family")."""
    assert f"({model}, receptive radius" in denoise_stdout, denoise_stdout
    assert derivation.startswith(f"ctdenoise {model} generator {summary['push']['version']}; noise level ")
