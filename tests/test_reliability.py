"""Reliability as a hostile user tests it: full disks (real tmpfs), unreadable folders (file
capabilities dropped), symbolic links, garbage rescale values, duplicate instances,
concurrent runs, killed processes and huge slices. Tests needing root for a mount or a
capability drop skip with the reason where the machine cannot do it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ctdenoise.app.denoise import DenoiseError, denoise_series, resolve_model, tiled
from ctdenoise.components.dicom_example_gen.pairing import pair_patient
from ctdenoise.contract.names import MODEL_METADATA_FILE
from ctdenoise.dicomio.reader import DicomRejected, read_ct_slices
from ctdenoise.simulator.dataset import simulate_dataset
from ctdenoise.simulator.dicom_writer import write_ct_slice
from ctdenoise.storage import lock, publish
from ctdenoise.storage.files import list_tree
from ctdenoise.trainer_module.export import export_generator
from ctdenoise.trainer_module.hparams import to_dict
from ctdenoise.trainer_module.models import preset, with_overrides
from tests import dicom_factory as f
from tests.holder import held
from tests.limits import HANG_S
from tests.pipeline_helpers import ctdenoise, ingest

ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny generator exported as the Trainer exports it (pushes and denoising need a real one)."""
    from ctdenoise.trainer_module.export import Description
    from ctdenoise.trainer_module.models import build

    folder = tmp_path_factory.mktemp("model") / "Format-Serving"
    hp = preset("tiny")
    model = build(hp)
    export_generator(
        model.generator, Description.of(model), str(folder), {"hparams": to_dict(hp), "train": {"steps": 0}}
    )
    return folder


@pytest.fixture
def tmpfs(tmp_path):
    """A real 16 MiB tmpfs at tmp_path/small, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        not ROOT
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("mounting a tmpfs needs root (mount -t tmpfs)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _slice(path: Path, hu: np.ndarray, series, z: float) -> Path:
    """One uncompressed CT slice at exactly `path` (the layout is the test's to break), an
    instance of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_ct_slice(
        path,
        hu,
        series,
        instance_number=1,
        z_mm=z,
        pixel_spacing_mm=0.8,
        slice_thickness_mm=3.0,
        sop_uid=pydicom.uid.generate_uid(),
    )
    return path


def _fill(folder: Path, leave_bytes: int) -> None:
    """Fill a filesystem until only about `leave_bytes` are free."""
    free = shutil.disk_usage(folder).free - leave_bytes
    if free > 0:
        (folder / "filler").write_bytes(b"\0" * free)


# --- 1. push is atomic -----------------------------------------------------------------------


def _push(model: Path, serving: Path) -> str:
    """The product's Pusher executor on a blessed model; returns the pushed destination."""
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from ctdenoise.components.pusher.executor import Executor

    candidate, blessing = standard_artifacts.Model(), standard_artifacts.ModelBlessing()
    candidate.uri, blessing.uri = str(model.parent), str(model.parent / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(serving.parent / f"pushed_{len(list(serving.parent.iterdir()))}")
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(serving))
    )
    Executor().Do(
        {"model": [candidate], "model_blessing": [blessing]},
        {"pushed_model": [pushed]},
        {"push_destination": proto_utils.proto_to_json(destination)},
    )
    return pushed.get_string_custom_property("pushed_destination")


def test_a_push_onto_a_full_disk_leaves_the_older_version_as_latest(model, tmpfs, tmp_path):
    serving = tmpfs / "serving"
    first = _push(model, serving)
    _fill(tmpfs, leave_bytes=64 * 1024)
    with pytest.raises(OSError):
        _push(model, serving)
    assert [p.name for p in serving.iterdir()] == [Path(first).name]  # no version, no hidden partial
    (tmpfs / "filler").unlink()
    second = _push(model, serving)
    assert int(Path(second).name) > int(Path(first).name)
    assert (Path(second) / MODEL_METADATA_FILE).is_file()


def test_latest_never_picks_an_incomplete_or_hidden_version(model, tmp_path):
    serving = tmp_path / "serving"
    shutil.copytree(model, serving / "100")
    shutil.copytree(model, serving / "200")
    (serving / "200" / MODEL_METADATA_FILE).unlink()  # a version whose copy did not finish
    shutil.copytree(model, serving / ".300.partial-abcd")
    assert resolve_model("latest", tmp_path) == str(serving / "100")


def test_a_killed_publish_leaves_only_a_hidden_folder_that_the_next_one_removes(tmp_path):
    target = tmp_path / "serving" / "123"
    code = textwrap.dedent(f"""
        import os, signal
        from ctdenoise.storage.publish import staged
        with staged({str(target)!r}) as folder:
            open(os.path.join(folder, "half"), "w").write("x")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", code], check=False)
    left = list((tmp_path / "serving").iterdir())
    assert len(left) == 1 and left[0].name.startswith(".123.partial-") and not target.exists()
    with publish.staged(str(target)) as folder:
        Path(folder, "whole").write_text("y")
    assert sorted(p.name for p in (tmp_path / "serving").iterdir()) == ["123"]
    assert [p.name for p in target.iterdir()] == ["whole"]


# --- 2. ingestion accounts for every entry -------------------------------------------------------


def _small_root(root: Path) -> None:
    for patient in ("P1", "P2"):
        for dose in ("LDCT", "NDCT"):
            _slice(root / patient / dose / "1.dcm", f.body_hu(32, seed=1), f.series(patient, dose), z=0.0)


def test_symbolic_links_are_followed_and_broken_or_looping_ones_are_listed(tmp_path):
    root = tmp_path / "data"
    _small_root(root)
    (root / "P3").symlink_to(root / "P1", target_is_directory=True)  # an alias of another patient
    (root / "P2" / "LDCT" / "dangling.dcm").symlink_to(tmp_path / "nowhere.dcm")
    (root / "P2" / "NDCT" / "self.dcm").symlink_to(root / "P2" / "NDCT" / "self.dcm")
    (root / "P2" / "loop").symlink_to(root, target_is_directory=True)
    outside = tmp_path / "staging" / "P4"
    _small_root(tmp_path / "staging_src")
    shutil.copytree(tmp_path / "staging_src" / "P1", outside)
    (root / "P4").symlink_to(outside, target_is_directory=True)  # data staged elsewhere
    listing = list_tree(str(root))
    problems = {p["path"]: p["reason"] for p in listing.problems}
    assert problems["P2/LDCT/dangling.dcm"] == "broken symbolic link"
    assert problems["P2/NDCT/self.dcm"] == "symbolic link loop"
    assert problems["P2/loop"].startswith("symbolic link loop")
    assert problems["P3"].startswith("same folder as P1/")
    assert "P4/LDCT/1.dcm" in listing.files and "P4/NDCT/1.dcm" in listing.files
    report = ingest(root, tmp_path / "out")
    assert report["accepted"] == 6 and {r["path"] for r in report["rejected"]} == set(problems)


def test_an_unreadable_folder_is_listed_not_lost(tmp_path):
    if not ROOT:
        pytest.skip("dropping file capabilities needs root (setpriv)")
    root = tmp_path / "data"
    _small_root(root)
    (root / "P2" / "NDCT").chmod(0)
    code = (
        "from ctdenoise.storage.files import list_tree; import json, sys; "
        "print(json.dumps(list_tree(sys.argv[1]).problems))"
    )
    try:
        result = subprocess.run(
            [
                "setpriv",
                "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search",
                sys.executable,
                "-c",
                code,
                str(root),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        (root / "P2" / "NDCT").chmod(0o755)
    assert json.loads(result.stdout) == [{"path": "P2/NDCT/", "reason": "unreadable folder (Permission denied)"}]


def test_a_copy_refuses_a_folder_it_cannot_list_instead_of_skipping_it(tmp_path):
    if not ROOT:
        pytest.skip("dropping file capabilities needs root (setpriv)")
    source = tmp_path / "model"
    (source / "variables").mkdir(parents=True)
    (source / "variables" / "variables.index").write_text("index")
    (source / "saved_model.pb").write_text("pb")
    (source / "variables").chmod(0)
    code = (
        "from ctdenoise.storage.files import copy_tree; import sys\n"
        "try: copy_tree(sys.argv[1], sys.argv[2], last='saved_model.pb')\n"
        "except PermissionError as e: print('refused', e.filename)"
    )
    try:
        result = subprocess.run(
            [
                "setpriv",
                "--bounding-set=-dac_override,-dac_read_search",
                "--inh-caps=-dac_override,-dac_read_search",
                sys.executable,
                "-c",
                code,
                str(source),
                str(tmp_path / "copy"),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        (source / "variables").chmod(0o755)
    assert result.stdout.split() == ["refused", str(source / "variables")]
    assert not (tmp_path / "copy" / "saved_model.pb").exists()  # the completion marker is never written


def test_a_root_with_nothing_in_the_layout_fails_naming_what_it_found(tmp_path):
    root = tmp_path / "data"
    _slice(root / "loose.dcm", f.body_hu(32), f.series("P1", "LDCT"), z=0.0)
    (root / "notes.txt").write_text("x")
    result = ctdenoise(
        "run",
        "--data",
        str(root),
        "--root",
        str(tmp_path / "run"),
        "--until",
        "ingest",
        "--summary",
        str(tmp_path / "s.json"),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("ctdenoise: error: no DICOM files under")
    ingest_summary = json.loads((tmp_path / "s.json").read_text())["ingest"]
    assert ingest_summary["accepted"] == 0 and {r["path"] for r in ingest_summary["rejected"]} == {
        "loose.dcm",
        "notes.txt",
    }


# --- 3. garbage HU is refused per file ---------------------------------------------------------


@pytest.mark.parametrize(
    "element, value, reason",
    [
        ("RescaleIntercept", "NaN", "RescaleIntercept is not a finite number"),
        ("RescaleSlope", "inf", "RescaleSlope is not a finite number"),
        ("RescaleSlope", "0", "RescaleSlope is 0"),
        ("RescaleSlope", "1e300", "beyond the int16 range"),
    ],
)
def test_rescale_values_that_give_no_hu_are_rejected(tmp_path, element, value, reason, recwarn):
    path = _slice(tmp_path / "bad.dcm", f.body_hu(32), f.series("P1", "LDCT"), z=0.0)
    ds = pydicom.dcmread(path)
    ds[element].value = value
    ds.save_as(path)
    with pytest.raises(DicomRejected, match=reason):
        read_ct_slices(path, "bad.dcm")
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_one_slope_zero_slice_among_good_ones_is_rejected_at_ingestion_and_by_denoise(model, tmp_path):
    root = tmp_path / "data"
    simulate_dataset(root, patients=2, slices=2, size=32, seed=3, progress=None)
    bad = root / "SIM001" / "LDCT" / "0002.dcm"
    ds = pydicom.dcmread(bad)
    ds.RescaleSlope = 0
    ds.save_as(bad)
    report = ingest(root, tmp_path / "out")
    assert report["rejected"] == [
        {"path": "SIM001/LDCT/0002.dcm", "reason": "RescaleSlope is 0: every pixel would read the same HU"}
    ]
    with pytest.raises(DenoiseError, match=r"LDCT/0002.dcm: RescaleSlope is 0"):
        denoise_series(model, root / "SIM001" / "LDCT", tmp_path / "denoised", progress=None)
    assert not (tmp_path / "denoised").exists()


# --- 4. slices of different grids never share an example ---------------------------------------


def test_an_ndct_on_another_grid_stays_unpaired_and_training_reads_both(tmp_path):
    from ctdenoise.trainer_module.data import CHANNELS, dose_slices

    root = tmp_path / "data"
    for patient in ("P1", "P2"):
        _slice(root / patient / "LDCT" / "1.dcm", f.body_hu(64), f.series(patient, "LDCT"), z=0.0)
        _slice(root / patient / "NDCT" / "1.dcm", f.body_hu(32), f.series(patient, "NDCT"), z=0.0)
    report = ingest(root, tmp_path / "out")
    assert report["pairs"] == 0 and report["accepted"] == 4
    files = [str(tmp_path / "out" / "Split-*" / "*.gz")]
    shapes = {
        dose: sorted(image.shape for image in dose_slices(files, dose).as_numpy_iterator()) for dose in ("ldct", "ndct")
    }
    assert shapes == {"ldct": [(64, 64, CHANNELS)] * 2, "ndct": [(32, 32, CHANNELS)] * 2}


# --- 5. one run per root ------------------------------------------------------------------------


def test_a_second_holder_of_a_run_root_is_refused_in_one_line(tmp_path):
    with held(
        f"""
        import sys
        from pathlib import Path
        from ctdenoise.storage.lock import exclusive
        with exclusive(Path({str(tmp_path)!r}), "ctdenoise run"):
            print("held", flush=True)
            sys.stdin.read()  # holds on until the test lets go, however long the run takes to reach the lock
    """,
        "held",
    ) as holder:
        try:
            simulate_dataset(tmp_path / "data", patients=2, slices=1, size=32, seed=4, progress=None)
            result = ctdenoise("run", "--data", str(tmp_path / "data"), "--root", str(tmp_path), "--until", "ingest")
            assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
            [line] = result.stderr.strip().splitlines()
            assert line.startswith(f"ctdenoise: error: {tmp_path} is in use by ctdenoise run (pid {holder.pid}")
            with pytest.raises(lock.Busy), lock.exclusive(tmp_path, "test"):
                pass
        finally:
            holder.kill()  # killed, not let go: the lock must not outlive its holder
    with lock.exclusive(tmp_path, "test"):  # a killed holder leaves no stale lock
        pass


# --- 6. fail fast, with one line ---------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("pool_size=-1", "pool_size must be >= 0"),
        ("lr=nan", "lr must be a finite number > 0"),
        ("epochs=100000000000000000000", "more than 1000000000 steps"),
        ("patch=16", "patch must be >= 24"),
        ("beta1=1", r"beta1 must be a finite number in \[0, 1\)"),
    ],
)
def test_bad_hyperparameters_fail_before_anything_runs(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        with_overrides(preset("tiny"), [override])
    result = ctdenoise("run", "--data", str(tmp_path), "--root", str(tmp_path / "run"), "--set", override)
    assert result.returncode == 1 and not (tmp_path / "run").exists()
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ctdenoise: error: ")


def test_a_patch_larger_than_the_slices_is_refused_before_training(tmp_path):
    from ctdenoise.trainer_module.run import fn_args, run_fn

    root = tmp_path / "data"
    simulate_dataset(root, patients=2, slices=1, size=32, seed=4, progress=None)
    ingest(root, tmp_path / "out")
    hp = with_overrides(preset("tiny"), ["patch=48"])
    with pytest.raises(ValueError, match=r"patch 48 is larger than the smallest training slice side \(32 px\)"):
        run_fn(fn_args(str(tmp_path / "out"), str(tmp_path / "run"), str(tmp_path / "model"), hp, eval_slices=1))


def test_summary_pointing_at_a_folder_is_refused_before_running(tmp_path):
    result = ctdenoise("run", "--data", str(tmp_path), "--root", str(tmp_path / "run"), "--summary", str(tmp_path))
    assert result.returncode == 1 and not (tmp_path / "run").exists()
    assert result.stderr.strip().splitlines() == [
        f"ctdenoise: error: --summary {tmp_path} is a folder; give a file name"
    ]


def test_a_full_disk_during_denoise_is_one_line_and_leaves_nothing(model, tmpfs, tmp_path):
    series = tmp_path / "sim"
    simulate_dataset(series, patients=1, slices=3, size=256, seed=5, progress=None)
    _fill(tmpfs, leave_bytes=200 * 1024)
    result = ctdenoise(
        "denoise", "--model", str(model), "--input", str(series / "SIM001" / "LDCT"), "--out", str(tmpfs / "out")
    )
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"ctdenoise: error: {tmpfs / 'out'}: cannot write the derived series (No space left on device)"
    )
    assert "Traceback" not in result.stderr and sorted(p.name for p in tmpfs.iterdir()) == ["filler"]


def test_a_damaged_metadata_store_is_one_line_without_sql(tmp_path):
    (tmp_path / "metadata.sqlite").write_bytes(b"SQLite format 3\0" + os.urandom(4096))
    result = ctdenoise("lineage", "--root", str(tmp_path))
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "not a readable ML Metadata store" in line and "CREATE" not in line


@pytest.mark.parametrize("command", [["lineage"], ["run", "--data", "."]], ids=["lineage", "run"])
def test_an_unreachable_mysql_store_is_one_line_before_anything_runs(tmp_path, command):
    result = ctdenoise(*command, "--root", str(tmp_path / "root"), "--mlmd-mysql", "127.0.0.1:9/metadb")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        "ctdenoise: error: ML Metadata at MySQL root@127.0.0.1:9/metadb: nothing answers at 127.0.0.1:9"
    )
    assert not (tmp_path / "root").exists()


# --- 7. integrity -------------------------------------------------------------------------------


def _record(path: str, z: float | None, instance: str, shape=(8, 8)):
    from ctdenoise.dicomio.reader import SliceRecord

    return SliceRecord(path, np.zeros(shape, np.int16), z, None, None, None, None, instance)


def test_positions_that_are_not_numbers_never_share_a_key(tmp_path):
    for name in ("a.dcm", "b.dcm"):
        path = _slice(tmp_path / name, f.body_hu(32), f.series("P1", "LDCT"), z=0.0)
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [0, 0, "NaN"]
        ds.SliceLocation = "NaN"
        ds.save_as(path)
    records = [("ldct", read_ct_slices(tmp_path / n, f"P1/LDCT/{n}")[0]) for n in ("a.dcm", "b.dcm")]
    assert [r.z for _, r in records] == [None, None]
    outcome = pair_patient("P1", records)
    assert [key for key, _ in outcome.examples] == ["P1/a", "P1/b"] and not outcome.rejected


def test_a_second_file_of_one_instance_is_rejected_as_a_duplicate():
    outcome = pair_patient(
        "P1",
        [
            ("ldct", _record("P1/LDCT/1.dcm", 0.0, "1.2.3")),
            ("ldct", _record("P1/LDCT/copy.dcm", 3.0, "1.2.3")),
            ("ndct", _record("P1/NDCT/1.dcm", 0.0, "1.2.4")),
        ],
    )
    assert outcome.rejected == [
        {"path": "P1/LDCT/copy.dcm", "reason": "duplicate instance: same SOPInstanceUID as P1/LDCT/1.dcm"}
    ]
    assert outcome.pairs == 1


def test_denoise_refuses_a_series_holding_one_instance_twice(model, tmp_path):
    series = tmp_path / "series"
    simulate_dataset(tmp_path / "sim", patients=1, slices=2, size=32, seed=6, progress=None)
    shutil.copytree(tmp_path / "sim" / "SIM001" / "LDCT", series)
    shutil.copy(series / "0001.dcm", series / "0001_copy.dcm")
    with pytest.raises(DenoiseError, match=r"0001_copy.dcm: the same instance \(SOPInstanceUID\) as"):
        denoise_series(model, series, tmp_path / "out", progress=None)


# --- 8. leaks -----------------------------------------------------------------------------------


def test_a_publish_removes_the_staging_folder_of_a_dead_owner_only(tmp_path):
    parent = tmp_path / "serving"
    dead, alive = parent / ".7.partial-dead", parent / ".7.partial-live"
    for folder, pid in ((dead, 2**22 + 1), (alive, os.getpid())):
        folder.mkdir(parents=True)
        (folder / ".owner").write_text(f"{os.uname().nodename} {pid}\n")
    with publish.staged(str(parent / "7")) as folder:
        Path(folder, "x").write_text("1")
    assert sorted(p.name for p in parent.iterdir()) == [".7.partial-live", "7"]


# --- 9. memory ----------------------------------------------------------------------------------


def test_tiles_agree_with_the_whole_slice(model):
    """Tiles overlapping by more than the generator's receptive radius (22 px each side)
    reproduce the slice denoised in one piece."""
    hu = np.random.default_rng(0).normal(0, 300, (1, 300, 330, 1)).astype(np.float32)
    np.testing.assert_allclose(
        tiled(lambda x: _whole(model, x), hu, tile=128, overlap=32), _whole(model, hu), atol=1e-2
    )


def _whole(model: Path, hu: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(model)).signatures["serving_default"]
    return serve(hu=tf.constant(hu), noise_hu=tf.fill([len(hu)], 20.0))["denoised_hu"].numpy()


@pytest.mark.slow
def test_denoising_a_4096_slice_stays_under_the_memory_bound(model, tmp_path):
    """Peak resident memory of `ctdenoise denoise` on one 4096 × 4096 slice (the tiny model
    took 5.6 GB before tiling); the bound is MEMORY_BOUND_GIB."""
    _slice(tmp_path / "big" / "1.dcm", np.full((4096, 4096), 40.0), f.series("P1", "LDCT"), z=0.0)
    code = textwrap.dedent(f"""
        import sys
        from ctdenoise.app.cli import main
        code = main(["denoise", "--model", {str(model)!r}, "--input", {str(tmp_path / "big")!r},
                     "--out", {str(tmp_path / "out")!r}])
        # the process's own peak: getrusage's ru_maxrss carries the forking pytest worker's across exec
        peak = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
        print("peak_kib", peak, file=sys.stderr)
        sys.exit(code)
    """)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_S
    )  # bounds a hang
    assert result.returncode == 0, result.stderr[-2000:]
    peak_gib = int(result.stderr.split("peak_kib")[-1].split()[0]) / 2**20
    assert peak_gib < MEMORY_BOUND_GIB, f"peak {peak_gib:.2f} GiB"


MEMORY_BOUND_GIB = 2.0
"""TensorFlow alone takes about 0.6 GiB here; one 4096² slice in float32 is 64 MiB."""
