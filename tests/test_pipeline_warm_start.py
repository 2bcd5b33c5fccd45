"""`ctdenoise run --warm-start` end to end on LocalDagRunner: a run starts from the root's
latest blessed model, or from a SavedModel, which ML Metadata records as the Trainer's input
and the Evaluator's baseline; a model of another architecture is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctdenoise.metadata.queries import INPUT_EVENTS, open_store
from ctdenoise.trainer_module.export import Description, export_generator
from ctdenoise.trainer_module.models import build, preset
from tests.conftest import PERMISSIVE_GATE
from tests.pipeline_helpers import ctdenoise

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def warm_runs(simulated_data, tmp_path_factory) -> dict:
    """In one root, tiny runs (the permissive gate): from `latest` while nothing is blessed, to
    push; from `latest` again, to train; from an exported (untrained) tiny cycle_identity
    generator, to push; and red_cnn from that same model (refused)."""
    base = tmp_path_factory.mktemp("base") / "cycle_identity"
    model = build(preset("tiny"))
    export_generator(model.generator, Description.of(model), str(base), {"test": True})
    root = tmp_path_factory.mktemp("warm")

    def run(name: str, *args: str) -> dict:
        summary = root / f"{name}.json"
        result = ctdenoise(
            "run",
            "--data",
            str(simulated_data),
            "--root",
            str(root),
            "--preset",
            "tiny",
            "--summary",
            str(summary),
            *args,
        )
        return {"result": result, "summary": json.loads(summary.read_text()) if summary.exists() else None}

    return {
        "base": base,
        "root": root,
        "first": run("first", "--warm-start", "latest", *PERMISSIVE_GATE),
        "from_latest": run("from_latest", "--until", "train", "--warm-start", "latest"),
        "from_path": run("from_path", "--warm-start", str(base), *PERMISSIVE_GATE),
        "mismatch": run("mismatch", "--until", "train", "--set", "model=red_cnn", "--warm-start", str(base)),
    }


def _trainer(root: Path, run: dict) -> dict:
    """The Trainer execution of the model that `run` trained, from that model's lineage."""
    assert run["result"].returncode == 0, run["result"].stderr[-3000:]
    result = ctdenoise("lineage", "--root", str(root), "--model", run["summary"]["train"]["model_uri"], "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    trainer = json.loads(result.stdout)["produced_by"]
    assert trainer["component"] == "Trainer"
    return trainer


def _evaluator_baseline(root: Path, model_uri: str) -> str:
    """The URI of the baseline model of the Evaluator execution that judged `model_uri`."""
    store = open_store(root)
    [model] = store.get_artifacts_by_uri(model_uri)
    readers = [e.execution_id for e in store.get_events_by_artifact_ids([model.id]) if e.type in INPUT_EVENTS]
    [evaluator] = [
        e
        for e in store.get_executions_by_id(readers)
        if store.get_execution_types_by_id([e.type_id])[0].name.endswith("Evaluator")
    ]
    [baseline] = [
        e.artifact_id
        for e in store.get_events_by_execution_ids([evaluator.id])
        if e.path.steps[0].key == "baseline_model"
    ]
    return store.get_artifacts_by_id([baseline])[0].uri


def test_latest_without_a_blessed_model_trains_from_scratch_and_says_so(warm_runs):
    first = warm_runs["first"]
    assert first["result"].returncode == 0, first["result"].stderr[-3000:]
    assert "no blessed model" in first["result"].stdout and "training starts from scratch" in first["result"].stdout
    assert "base_model" not in _trainer(warm_runs["root"], first)["inputs"]
    assert first["summary"]["evaluation"]["blessed"] and first["summary"]["push"]["pushed"]


def test_a_later_run_starts_from_the_latest_blessed_model(warm_runs):
    root, run = warm_runs["root"], warm_runs["from_latest"]
    [start] = _trainer(root, run)["inputs"]["base_model"]
    blessed = warm_runs["first"]["summary"]["train"]["model_uri"]
    assert start["uri"] == blessed
    # a pushed cycle model carries its F: both generators start warm
    assert f"warm start: generator and reverse_generator from cycle_identity ({blessed}/Format-Serving)" in (
        run["result"].stdout
    )


def test_a_run_from_a_saved_model_records_it_and_gates_against_it(warm_runs):
    root, run = warm_runs["root"], warm_runs["from_path"]
    [start] = _trainer(root, run)["inputs"]["base_model"]
    assert Path(start["uri"]).parent == root / "pipeline" / "WarmStart"
    copied = Path(start["uri"], "Format-Serving", "saved_model.pb")
    assert copied.read_bytes() == (warm_runs["base"] / "saved_model.pb").read_bytes()
    assert "warm start: generator from cycle_identity" in run["result"].stdout  # exported without its F
    assert (
        _evaluator_baseline(root, run["summary"]["train"]["model_uri"]) == start["uri"]
    )  # the gate compares with the start model, not the blessed one
    evaluation = run["summary"]["evaluation"]
    assert "baseline" in evaluation["overall"]
    assert evaluation["blessed"] == (evaluation["failures"] == [])


def test_another_architecture_is_refused_in_one_line(warm_runs):
    result = warm_runs["mismatch"]["result"]
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "cannot warm-start red_cnn from cycle_identity" in last and "architecture" in last, result.stderr[-2000:]


def test_a_warm_start_that_cannot_start_is_refused_before_the_run(simulated_data, tmp_path):
    missing = ctdenoise("run", "--data", str(simulated_data), "--root", str(tmp_path), "--warm-start", str(tmp_path))
    assert missing.returncode != 0 and "no SavedModel there" in missing.stderr
    assert not (tmp_path / "metadata.sqlite").exists()
    early = ctdenoise(
        "run", "--data", str(simulated_data), "--root", str(tmp_path), "--until", "validate", "--warm-start", "latest"
    )
    assert early.returncode != 0 and "stops before train" in early.stderr
