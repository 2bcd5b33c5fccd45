"""Command-line contract: bad input ends with one clear line and a non-zero status."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from ctdenoise.app.cli import main
from ctdenoise.contract.features import validated_feature_names
from ctdenoise.pipeline import configs


@pytest.mark.parametrize(
    "argv,message",
    [
        (["run", "--data", "/no/such/folder"], "data folder not found: /no/such/folder"),
        (["simulate", "--out", "{tmp}/x", "--patients", "0"], "patients"),
        (["simulate", "--out", "{tmp}/x", "--dose", "1.5"], "dose"),
        (["simulate", "--out", "{tmp}/x", "--dose", "0.4:0.1"], "a range LOW:HIGH within it, got 0.4:0.1"),
        (["simulate", "--out", "{tmp}/x", "--summary", "{tmp}"], "is a folder"),
        (["run", "--data", "{tmp}", "--axial-tolerance", "95"], "axial tolerance must be in [0, 90) degrees, got 95"),
        (
            ["denoise", "--model", "{tmp}/m", "--input", "s3://bucket/LDCT", "--out", "{tmp}/o"],
            "--input s3://bucket/LDCT: denoise reads and writes local folders or DICOMweb",
        ),
        (
            ["run", "--data", "{tmp}", "--until", "train", "--require-blessed"],
            "--require-blessed needs the gate: --until train stops before evaluate",
        ),
        (
            ["pull", "--from", "dicomweb+http://u:secret@127.0.0.1:1/dicom-web", "--out", "{tmp}/d"],
            "credentials in the address are refused",
        ),
        (["pull", "--from", "http://127.0.0.1:1/dicom-web", "--out", "{tmp}/d"], "not a DICOMweb address"),
        (
            ["pull", "--from", "dicomweb+http://127.0.0.1:1/dicom-web", "--out", "{tmp}/d", "--ldct", "("],
            "--ldct (: not a regular expression",
        ),
    ],
)
def test_bad_input_is_one_line_and_non_zero(argv, message, tmp_path, capsys):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ctdenoise: error: ") and message in err[0]


def test_version_is_the_distributions(capsys):
    import tomllib

    version = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"ctdenoise {version}"


def test_curated_schema_lists_exactly_the_validated_features():
    schema = text_format.Parse(configs.SCHEMA_FILE.read_text(), schema_pb2.Schema())
    assert [f.name for f in schema.feature] == validated_feature_names()


def test_an_error_message_becomes_one_bounded_line():
    from ctdenoise.app.messages import LIMIT, one_line

    assert one_line(ValueError("first\n  second\tthird")) == "first second third"
    assert one_line(KeyError()) == "KeyError"
    assert one_line(OSError("disk full"), typed=True) == "OSError: disk full"
    long = one_line(RuntimeError("x" * 5000))
    assert len(long) == LIMIT and long.endswith("...")
