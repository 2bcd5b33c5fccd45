"""Training on more than one worker or replica (docs/design.md, "Training mechanics"): two worker processes
under MultiWorkerMirroredStrategy on loopback ports run the product's run_fn in step and only
the chief keeps anything; MirroredStrategy over two logical CPUs trains with replica-local
image pools; which worker is the chief; where a non-chief worker resumes from.

A strategy must be set up before TensorFlow starts in a process, so the training runs in
subprocesses (tests/distributed_helpers.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ctdenoise.contract.names import MODEL_METADATA_FILE
from tests.limits import HANG_S
from tests.pipeline_helpers import ingest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def examples(simulated_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("examples")
    ingest(simulated_data, out)
    return out


def free_ports(count: int) -> list[int]:
    """Ports free on the loopback interface now (held together so that they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def helper(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.distributed_helpers", *args]


def env_with(**variables: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **variables,
    }


def tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no output)"


def run_chief_and_worker(tmp_path: Path, command: Callable[[str], list[str]]) -> None:
    """Run `command("chief")` and `command("worker")` as one job: TF_CONFIG names a chief and a
    worker on free loopback ports, TMPDIR is tmp_path/tmp-<task>, output goes to <task>.log.
    Waits for both to exit; when one fails, kills the other (it would wait for it in a
    collective forever). HANG_S bounds a hang."""
    cluster = {name: [f"127.0.0.1:{port}"] for name, port in zip(("chief", "worker"), free_ports(2), strict=True)}
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name in ("chief", "worker"):
            temp = tmp_path / f"tmp-{name}"
            temp.mkdir()
            tf_config = json.dumps({"cluster": cluster, "task": {"type": name, "index": 0}})
            with open(tmp_path / f"{name}.log", "w") as log:
                processes[name] = subprocess.Popen(
                    command(name),
                    cwd=REPO,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env_with(TF_CONFIG=tf_config, TMPDIR=str(temp)),
                )
        deadline = time.monotonic() + HANG_S
        while any(p.poll() is None for p in processes.values()):
            failed = [n for n, p in processes.items() if p.poll() not in (None, 0)]
            assert not failed, f"{failed[0]} failed:\n{tail(tmp_path / f'{failed[0]}.log')}"
            assert time.monotonic() < deadline, f"hung; chief:\n{tail(tmp_path / 'chief.log')}"
            time.sleep(1)  # how often to look, not how long to wait
        for name, process in processes.items():
            assert process.returncode == 0, f"{name} failed:\n{tail(tmp_path / f'{name}.log')}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_chief_is_the_chief_task_or_else_worker_0(monkeypatch):
    from ctdenoise.trainer_module.strategy import this_worker

    def role(cluster: dict, task_type: str, index: int) -> bool:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}}))
        return this_worker().is_chief

    with_chief = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]}
    assert [role(with_chief, "chief", 0), role(with_chief, "worker", 0), role(with_chief, "worker", 1)] == [
        True,
        False,
        False,
    ]
    workers_only = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert [role(workers_only, "worker", 0), role(workers_only, "worker", 1)] == [True, False]
    assert this_worker().name == "worker-1"
    monkeypatch.delenv("TF_CONFIG")
    assert this_worker().is_chief  # alone


def test_a_non_chief_worker_resumes_privately_from_the_chiefs_checkpoint(tmp_path):
    """Every worker must restore the same step; only the chief writes under the run's folder."""
    import tensorflow as tf

    from ctdenoise.trainer_module.resume import CHECKPOINTS, KEY_FILE, prepare_checkpoint_dir

    def interrupted_run(name: str, key: str, step: int) -> None:
        run_dir = tmp_path / "model_run" / name
        (run_dir / CHECKPOINTS).mkdir(parents=True)
        (run_dir / KEY_FILE).write_text(key)
        counter = tf.Variable(step)
        tf.train.CheckpointManager(tf.train.Checkpoint(step=counter), str(run_dir / CHECKPOINTS), 3).save(step)

    def restored_step(folder: str) -> int:
        counter = tf.Variable(-1)
        tf.train.Checkpoint(step=counter).restore(tf.train.latest_checkpoint(folder)).assert_consumed()
        return int(counter.numpy())

    interrupted_run("1", "k", 20)
    interrupted_run("2", "k", 30)
    interrupted_run("3", "other", 90)
    run_dir = tmp_path / "model_run" / "4"
    before_chief = prepare_checkpoint_dir(str(run_dir), "k", progress=lambda _: None, private=str(tmp_path / "w1"))
    assert restored_step(before_chief) == 30 and not run_dir.exists()  # the best sibling; nothing written there
    chief = prepare_checkpoint_dir(str(run_dir), "k", progress=lambda _: None)
    assert restored_step(chief) == 30 and (run_dir / KEY_FILE).read_text() == "k"
    counter = tf.Variable(33)  # the chief trains on and is restarted: the workers follow its own checkpoints
    tf.train.CheckpointManager(tf.train.Checkpoint(step=counter), chief, 3).save(33)
    after_chief = prepare_checkpoint_dir(str(run_dir), "k", progress=lambda _: None, private=str(tmp_path / "w2"))
    assert restored_step(after_chief) == 33


@pytest.mark.slow
def test_two_workers_train_in_step_and_only_the_chief_keeps_anything(examples, tmp_path):
    """A chief and a worker (TF_CONFIG, 127.0.0.1) run `python -m ctdenoise.trainer_module.worker`, i.e.
    run_fn with fn_args as TFX builds them, on the `tiny` preset with one model run folder,
    both warm-started from one exported generator (a worker that missed it would part ways).
    The pools hold more than the 10 steps' fakes, so their fill count shows the per-replica
    batch: the global batch of 2 split over 2 replicas is 1 patch per replica and step."""
    from ctdenoise.trainer_module.export import Description, export_generator
    from ctdenoise.trainer_module.models import build, configure

    overrides = ["pool_size=50"]
    hp = configure("tiny", overrides)
    base, start = tmp_path / "base", build(hp)
    for variable in start.generator.variables:  # not the weights the workers would start with anyway
        variable.assign(variable * 1.5 + 0.01)
    export_generator(start.generator, Description.of(start), str(base), None)
    model_run = tmp_path / "model_run"
    run_chief_and_worker(
        tmp_path,
        lambda name: helper(
            "worker",
            str(tmp_path / f"{name}.npz"),
            "--examples",
            str(examples),
            "--model-run-dir",
            str(model_run),
            "--serving-model-dir",
            str(tmp_path / f"serving-{name}"),
            "--preset",
            "tiny",
            *(f"--set={o}" for o in overrides),
            "--base-model",
            str(base),
        ),
    )

    chief, worker = (np.load(tmp_path / f"{name}.npz") for name in ("chief", "worker"))
    assert int(chief["step"]) == int(worker["step"]) == hp.total_steps
    assert sorted(chief.files) == sorted(worker.files)
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], worker[key], err_msg=key)
    per_replica_batch = hp.batch // 2
    assert [int(chief["pool_a_count"]), int(chief["pool_b_count"])] == [hp.total_steps * per_replica_batch] * 2

    serving = tmp_path / "serving-chief"
    assert (serving / "saved_model.pb").is_file() and (serving / MODEL_METADATA_FILE).is_file()
    metadata = json.loads((serving / MODEL_METADATA_FILE).read_text())
    assert metadata["train"]["steps"] == hp.total_steps and metadata["hparams"]["pool_size"] == 50
    assert metadata["warm_start"] == str(base)
    assert metadata["train"]["tensorboard_dir"] == str(model_run / "tensorboard")
    assert not (tmp_path / "serving-worker").exists()
    assert {p.name for p in model_run.iterdir()} == {"checkpoints", "tensorboard", "resume_key.txt"}
    temporary = json.loads((tmp_path / "worker.npz.temporary.json").read_text())  # as the last step ended
    worker_checkpoints = [p for p in temporary if p.endswith(".index") and "/checkpoints/ckpt-" in p]
    assert worker_checkpoints, f"the worker wrote no checkpoints of its own; its TMPDIR held {temporary}"
    left = [
        p.name
        for temp in ("tmp-worker", "tmp-chief")
        for p in (tmp_path / temp).iterdir()
        if p.name.startswith("ctdenoise-")
    ]
    assert left == []

    # The chief's multi-worker checkpoint restores completely on one device.
    import tensorflow as tf

    from ctdenoise.trainer_module.models import build

    restored = build(hp)
    restored.checkpoint().restore(tf.train.latest_checkpoint(str(model_run / "checkpoints"))).assert_consumed()
    assert restored.completed_steps == hp.total_steps
    assert int(restored.pool_A.count.numpy()) == hp.total_steps * per_replica_batch
    for index, variable in enumerate(restored.G.trainable_variables):  # BN re-estimation came after it
        np.testing.assert_array_equal(variable.numpy(), chief[f"trainable_{index}"])


@pytest.mark.slow
def test_workers_that_would_start_at_different_steps_all_stop_with_one_line(tmp_path):
    """Under MultiWorkerMirroredStrategy a worker that resumed elsewhere would hang the others
    in a collective; fit's start check makes every worker stop instead, with the same verdict."""
    run_chief_and_worker(
        tmp_path, lambda name: helper("start", str(tmp_path / f"{name}.json"), "30" if name == "chief" else "20")
    )
    chief, worker = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("chief", "worker"))
    assert chief["multi_worker"] and worker["multi_worker"]
    assert chief["said"][0] == worker["said"][0] == ""  # both at step 0: go
    assert chief["said"][1] == (
        "workers resumed at different steps (this one at 30, mean 25): their checkpoint folders differ"
    )
    assert worker["said"][1].startswith("workers resumed at different steps (this one at 20, mean 25)")


@pytest.mark.slow
def test_mirrored_strategy_over_two_cpus_trains_with_a_pool_per_replica(examples, tmp_path):
    """The product's CycleGAN and fit on two logical CPU devices: both replicas train and fill
    their own image pool, from different patches; a checkpoint restores every replica's pool
    from the first replica's (docs/design.md, "Image pool"); a batch of 3 is refused."""
    out = tmp_path / "report.json"
    result = subprocess.run(
        helper("mirrored", str(out), str(examples), str(tmp_path / "work")),
        cwd=REPO,
        env=env_with(),
        capture_output=True,
        text=True,
        timeout=HANG_S,
    )  # bounds a hang
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    steps = 6
    assert report["replicas"] == 2
    assert report["steps"] == report["completed_steps"] == steps
    assert report["losses"] and all(np.isfinite(v) for v in report["losses"].values())
    assert report["psnr"] and all(np.isfinite(v) for v in report["psnr"].values())
    assert report["pool_counts"] == {"A": [steps, steps], "B": [steps, steps]}  # 1 patch per replica and step
    assert report["pools_differ_between_replicas"] == {"A": True, "B": True}
    assert report["restored_step"] == steps
    assert report["restored_pool_counts"] == {"A": [steps, steps], "B": [steps, steps]}
    assert report["restored_pools_are_the_first_replicas"] == {"A": True, "B": True}
    assert report["refused"] == "batch 3 does not split evenly over 2 replicas: use a multiple of 2"
